//! The catalog: finding listings, and a seller's listings, endpoint, secret and adapter.

use reqwest::Method;
use serde_json::{Value, json};

use crate::client::{decode, difficulty, str_field};
use crate::models::{
    AdapterInfo, CreatedListing, EndpointInfo, EndpointTestResult, EndpointUpdate, Listing,
    ListingQuery, ListingUpdate, NewListing, SigningSecret,
};
use crate::pow::solve_pow;
use crate::{Client, ClientError};

impl Client {
    /// `GET /listings`: the page of active listings matching `query`.
    pub async fn search_listings(&self, query: &ListingQuery) -> Result<Vec<Listing>, ClientError> {
        let data = Self::data(self.request(Method::GET, "/listings").query(query)).await?;
        decode(data, "listings")
    }

    /// One listing by id or slug.
    pub async fn get_listing(&self, id_or_slug: &str) -> Result<Listing, ClientError> {
        decode(
            Self::data(self.at(Method::GET, &["listings", id_or_slug])?).await?,
            "listing",
        )
    }

    /// Creates a listing (needs a seller key): solves a fresh listing proof-of-work and
    /// posts `listing`. The answer carries the endpoint's one-time signing secret.
    pub async fn create_listing(
        &self,
        listing: &NewListing,
    ) -> Result<CreatedListing, ClientError> {
        let challenge = Self::data(
            self.request(Method::POST, "/listings/challenge")
                .json(&json!({})),
        )
        .await?;
        let pow_challenge = str_field(&challenge, "challenge")?;
        let mut body =
            serde_json::to_value(listing).map_err(|e| ClientError::Http(e.to_string()))?;
        body["pow_nonce"] = json!(solve_pow(&pow_challenge, difficulty(&challenge)?));
        body["pow_challenge"] = json!(pow_challenge);
        let data = Self::data(self.request(Method::POST, "/listings").json(&body)).await?;
        let signing_secret = str_field(&data["gateway_endpoint"], "signing_secret")?;
        let mut data = data;
        if let Some(fields) = data.as_object_mut() {
            fields.remove("gateway_endpoint");
        }
        let listing: Listing = decode(data, "listing")?;
        Ok(CreatedListing {
            id: listing.id.clone(),
            listing,
            signing_secret,
        })
    }

    /// Changes a listing of the caller's (`None` fields stay as they are).
    pub async fn update_listing(
        &self,
        listing: &str,
        update: &ListingUpdate,
    ) -> Result<Listing, ClientError> {
        let req = self.at(Method::PATCH, &["listings", listing])?.json(update);
        decode(Self::data(req).await?, "listing")
    }

    /// The private endpoint's safe metadata (owner only).
    pub async fn endpoint(&self, listing: &str) -> Result<EndpointInfo, ClientError> {
        let req = self.at(Method::GET, &["listings", listing, "endpoint"])?;
        decode(Self::data(req).await?, "endpoint")
    }

    /// Changes the private endpoint: URL, upstream auth header, limits, pause.
    pub async fn update_endpoint(
        &self,
        listing: &str,
        update: &EndpointUpdate,
    ) -> Result<EndpointInfo, ClientError> {
        let req = self
            .at(Method::PUT, &["listings", listing, "endpoint"])?
            .json(update);
        decode(Self::data(req).await?, "endpoint")
    }

    /// Sends a signed test request to the private endpoint and reports its answer.
    pub async fn test_endpoint(&self, listing: &str) -> Result<EndpointTestResult, ClientError> {
        let req = self
            .at(Method::POST, &["listings", listing, "endpoint", "test"])?
            .json(&json!({}));
        decode(Self::data(req).await?, "endpoint test")
    }

    /// A new signing secret, shown once; the old one stops working at once.
    pub async fn rotate_secret(&self, listing: &str) -> Result<SigningSecret, ClientError> {
        let req = self
            .at(
                Method::POST,
                &["listings", listing, "endpoint", "rotate-secret"],
            )?
            .json(&json!({}));
        decode(Self::data(req).await?, "signing secret")
    }

    /// The listing's seller adapter.
    pub async fn adapter(&self, listing: &str) -> Result<AdapterInfo, ClientError> {
        let req = self.at(Method::GET, &["listings", listing, "adapter"])?;
        decode(Self::data(req).await?, "adapter")
    }

    /// Attaches a bundled adapter (`Some(name)`) and/or sets the adapter's `config`.
    pub async fn set_adapter(
        &self,
        listing: &str,
        bundled: Option<&str>,
        config: Option<&Value>,
    ) -> Result<AdapterInfo, ClientError> {
        let mut body = json!({});
        if let Some(name) = bundled {
            body["bundled"] = json!(name);
        }
        if let Some(config) = config {
            body["config"] = config.clone();
        }
        let req = self
            .at(Method::PUT, &["listings", listing, "adapter"])?
            .json(&body);
        decode(Self::data(req).await?, "adapter")
    }

    /// Uploads a seller-adapter component (the bytes of a `.wasm` component).
    pub async fn upload_adapter(
        &self,
        listing: &str,
        wasm: Vec<u8>,
    ) -> Result<AdapterInfo, ClientError> {
        let req = self
            .at(Method::PUT, &["listings", listing, "adapter", "component"])?
            .header(reqwest::header::CONTENT_TYPE, "application/wasm")
            .body(wasm);
        decode(Self::data(req).await?, "adapter")
    }

    /// Detaches the adapter; calls are forwarded unchanged again.
    pub async fn remove_adapter(&self, listing: &str) -> Result<AdapterInfo, ClientError> {
        let req = self.at(Method::DELETE, &["listings", listing, "adapter"])?;
        decode(Self::data(req).await?, "adapter")
    }
}
