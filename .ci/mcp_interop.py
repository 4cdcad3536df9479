"""The Python half of .ci/mcp-interop (run it through that script).

    mcp_interop.py URL API_KEY LISTING   connects the official Python MCP client (PyPI
                                         `mcp`, unmodified) to URL (a host's /mcp),
                                         lists the tools, searches for LISTING, calls
                                         it (a free listing) and checks the answers

Exits non-zero, saying what was expected and what came, at the first failed check.
"""

import asyncio
import json
import sys

from mcp import ClientSession
from mcp.client.streamable_http import streamable_http_client
from mcp.shared._httpx_utils import create_mcp_http_client

TOOLS = {"search_listings", "get_listing", "call_listing", "get_receipt", "list_gateway_requests"}
BODY = {"task": "summarize", "input": "mcp interop"}


def expect(ok, what, got):
    if not ok:
        sys.exit(f"mcp interop: expected {what}, got: {got}")


async def main(url, key, listing):
    http = create_mcp_http_client(headers={"Authorization": f"Bearer {key}"})
    async with http, streamable_http_client(url, http_client=http) as (read, write):
        async with ClientSession(read, write) as session:
            init = await session.initialize()
            expect(init.server_info.name == "crochet", "the server to be crochet", init.server_info)

            tools = await session.list_tools()
            names = {t.name for t in tools.tools}
            expect(TOOLS <= names, f"the tools {sorted(TOOLS)}", sorted(names))

            found = await session.call_tool("search_listings", {"q": "interop"})
            expect(not found.is_error, "search_listings to answer", found)
            ids = [l["id"] for l in found.structured_content["listings"]]
            expect(listing in ids, f"{listing} among the search results", ids)

            called = await session.call_tool("call_listing", {"listing": listing, "input": BODY})
            expect(not called.is_error, "call_listing to answer", called)
            data = called.structured_content
            expect(data["charged_amount"]["amount_cents"] == 0, "a free call", data)
            seller = data["seller_response"]
            expect(seller.get("verified") is True, "the seller to verify the gateway's signature", seller)
            expect(seller.get("received") == BODY, "the seller to receive the input", seller)
            text = json.loads(called.content[0].text)
            expect(text == seller, "the text content to be the seller's JSON", text)

            history = await session.call_tool("list_gateway_requests", {"role": "buyer"})
            rows = history.structured_content["requests"]
            expect(rows and rows[0]["id"] == data["request_id"], "the call in the history", rows)
    print(f"mcp interop: the Python MCP client listed {len(names)} tools and bought {data['request_id']}")


if __name__ == "__main__":
    asyncio.run(main(*sys.argv[1:4]))
