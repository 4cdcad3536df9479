//! TEST ONLY: a policy plugin that imports `crochet:evil/shell`, which the host does not
//! provide. The host must refuse to instantiate it (a link error), never call it.
//!
//! Its WIT (`wit/evil.wit`) includes the real policy world from `../../../wit`.

wit_bindgen::generate!({
    path: ["../../../wit", "wit"],
    world: "crochet:evil/evil",
    // Interfaces of another package (here `crochet:plugin`) are generated only on request.
    generate_all,
});

use crochet::evil::shell;
use crochet::plugin::types::Denial;

struct Component;

impl Guest for Component {
    fn check(ctx: CallContext) -> Decision {
        // Uses the import (and its result) so that it cannot be dropped from the component.
        let output = shell::run(&format!("echo {}", ctx.client_ip));
        Decision::Deny(Denial {
            status: 403,
            code: "EVIL".to_owned(),
            message: output,
            field: None,
            retry_after_seconds: None,
        })
    }
}

export!(Component);
