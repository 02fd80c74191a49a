"""An MCP client session against agent-gate, driven by gateway/tests/mcp_python.rs.

Uses the official Python MCP SDK (PyPI `mcp`) as a real client would. Reads MCP_URL,
MCP_TOKEN and MCP_MODE ("legacy": 2025-11-25 with initialize; "2026-07-28": stateless) from
the environment. Talks to the test over stdio: a line `HUMAN <entity>` asks the test to
approve the pending request on <entity> and waits for a line `DONE` on stdin. Prints one
JSON object per line `RESULT {...}` for the test to check, and exits non-zero on the first
failed expectation (with the reason on stderr).
"""

import asyncio
import json
import os
import sys

import httpx2
from mcp import Client, MCPError
from mcp.client.streamable_http import streamable_http_client

URL = os.environ["MCP_URL"]
TOKEN = os.environ["MCP_TOKEN"]
MODE = os.environ["MCP_MODE"]
# Entities per revision, so that the two runs against one gateway do not share requests.
ENTITIES = {
    "legacy": {"held": "light.kitchen", "outlives": "light.bedroom"},
    "2026-07-28": {"held": "light.living_room", "outlives": "switch.coffee_maker"},
}[MODE]


def expect(condition, what):
    if not condition:
        print(f"FAILED: {what}", file=sys.stderr, flush=True)
        sys.exit(1)


def report(step, **fields):
    print("RESULT " + json.dumps({"step": step, **fields}), flush=True)


def service_call(entity, service):
    domain = entity.split(".")[0]
    return {"domain": domain, "service": service, "entity_id": entity}


async def ask_human(entity):
    print(f"HUMAN {entity}", flush=True)
    line = await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
    expect(line.strip() == "DONE", f"the test answered {line!r}")


def text_of(result):
    return " ".join(getattr(block, "text", "") for block in result.content)


async def session():
    headers = {"Authorization": f"Bearer {TOKEN}"}
    async with httpx2.AsyncClient(headers=headers, timeout=60) as http:
        async with Client(streamable_http_client(URL, http_client=http), mode=MODE) as client:
            report("negotiated", protocol_version=str(client.protocol_version))

            listed = await client.list_tools()
            names = [tool.name for tool in listed.tools]
            report("list", tools=names)
            state_tool = next(t for t in listed.tools if t.name == "ha_get_state")
            expect(state_tool.input_schema.get("required") == ["entity_id"], "input schema")
            expect(state_tool.output_schema is not None, "ha_get_state has an output schema")
            service_tool = next(t for t in listed.tools if t.name == "ha_call_service")
            report("annotations",
                   get_state=state_tool.annotations.model_dump(by_alias=True, exclude_none=True),
                   call_service=service_tool.annotations.model_dump(by_alias=True, exclude_none=True))

            allowed = await client.call_tool("ha_get_state", {"entity_id": "lock.front_door"})
            expect(not allowed.is_error, f"allowed call: {text_of(allowed)}")
            expect(allowed.structured_content["entity_id"] == "lock.front_door", "structured")
            expect(json.loads(text_of(allowed))["entity_id"] == "lock.front_door", "text is JSON")
            report("allowed", state=allowed.structured_content["state"])

            denied = await client.call_tool(
                "ha_call_service", service_call("lock.front_door", "unlock")
            )
            expect(denied.is_error, "a denied call is a tool error")
            report("denied", text=text_of(denied), error=denied.structured_content["error"])

            invalid = await client.call_tool("ha_get_state", {"entity_id": "Not An Entity"})
            expect(invalid.is_error, "invalid arguments are a tool error")
            report("invalid", text=text_of(invalid))

            try:
                await client.call_tool("ha_no_such_tool", {})
                expect(False, "an unknown tool is a protocol error")
            except MCPError as error:
                report("unknown", code=error.code, message=error.message)

            # Approved by the human while the call is held open.
            progress = []

            async def on_progress(done, total, message):
                progress.append(message)

            held = ENTITIES["held"]
            approved = await client.call_tool(
                "ha_call_service", service_call(held, "turn_on"), progress_callback=on_progress
            )
            expect(not approved.is_error, f"approved while held: {text_of(approved)}")
            report("held", result=approved.structured_content)

            # Outlives the hold: answered "waiting", approved later, fetched by calling again.
            outlives = ENTITIES["outlives"]
            args = service_call(outlives, "turn_on")
            waiting = await client.call_tool(
                "ha_call_service", args, progress_callback=on_progress
            )
            expect(waiting.is_error, "a call that outlives the hold says it waits")
            status = waiting.structured_content
            expect(status["status"] == "awaiting_approval", f"status {status}")
            request_id = status["request_id"]
            report("waiting", text=text_of(waiting), status=status, progress=progress)

            pending = await client.call_tool("gateway_request_status", {"request_id": request_id})
            expect(not pending.is_error, "the status of a waiting call")
            expect(pending.structured_content["status"] == "awaiting_approval", "still waiting")

            await ask_human(outlives)
            again = await client.call_tool("ha_call_service", args)
            expect(not again.is_error, f"the re-sent call gets the outcome: {text_of(again)}")
            report("fetched", result=again.structured_content)

            # Once received, the same arguments make a new call (asked again: it waits).
            fresh = await client.call_tool("ha_call_service", args)
            expect(fresh.is_error and fresh.structured_content["status"] == "awaiting_approval",
                   "a call after the outcome was received is a new request")
            expect(fresh.structured_content["request_id"] != request_id, "a new request id")
            report("fresh", request_id=fresh.structured_content["request_id"])


async def raw_http():
    """What a client without the token, or a browser page of another origin, gets."""
    body = {"jsonrpc": "2.0", "id": 1, "method": "tools/list", "params": {}}
    accept = {"Accept": "application/json, text/event-stream",
              "Content-Type": "application/json", "MCP-Protocol-Version": "2025-11-25"}
    async with httpx2.AsyncClient(timeout=10) as http:
        wrong = await http.post(URL, json=body, headers={**accept, "Authorization": "Bearer wrong"})
        report("wrong_token", status=wrong.status_code,
               www_authenticate=wrong.headers.get("www-authenticate", ""))
        origin = await http.post(URL, json=body, headers={
            **accept, "Authorization": f"Bearer {TOKEN}", "Origin": "http://evil.example"})
        report("wrong_origin", status=origin.status_code)


async def main():
    await session()
    await raw_http()


asyncio.run(main())
