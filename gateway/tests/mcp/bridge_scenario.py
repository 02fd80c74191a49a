"""An MCP client session through the stdio bridge (`agent-gate mcp`), driven by
gateway/tests/mcp_bridge_python.rs.

Uses the official Python MCP SDK (PyPI `mcp`) as a client that only launches stdio servers
(Claude Desktop) would: it starts BRIDGE_BIN with `mcp --url GATEWAY_URL --hold-seconds 2`,
the token in AGENT_GATE_TOKEN. MCP_MODE picks the revision ("legacy": 2025-11-25 with
initialize; "2026-07-28": stateless). Talks to the test over stdio: `HUMAN <entity>` asks the
test to approve the pending request on <entity>, `RESTART` asks it to restart the gateway;
both wait for a line `DONE` on stdin. Prints `RESULT {...}` lines for the test to check and
exits non-zero on the first failed expectation (with the reason on stderr).
"""

import asyncio
import json
import os
import sys

from mcp import Client, MCPError, StdioServerParameters

BRIDGE = os.environ["BRIDGE_BIN"]
URL = os.environ["GATEWAY_URL"]
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


async def ask_test(line):
    print(line, flush=True)
    answer = await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
    expect(answer.strip() == "DONE", f"the test answered {answer!r}")


def text_of(result):
    return " ".join(getattr(block, "text", "") for block in result.content)


async def main():
    server = StdioServerParameters(
        command=BRIDGE,
        args=["mcp", "--url", URL, "--hold-seconds", "2"],
        env={"AGENT_GATE_TOKEN": TOKEN, "LOG_LEVEL": "info"},
    )
    async with Client(server, mode=MODE) as client:
        report("negotiated", protocol_version=str(client.protocol_version))

        listed = await client.list_tools()
        names = [tool.name for tool in listed.tools]
        report("list", tools=names)
        state_tool = next(t for t in listed.tools if t.name == "ha_get_state")
        expect(state_tool.input_schema.get("required") == ["entity_id"], "input schema")
        service_tool = next(t for t in listed.tools if t.name == "ha_call_service")
        report("schemas",
               get_state_output=state_tool.output_schema,
               call_service_output=service_tool.output_schema)
        report("annotations",
               get_state=state_tool.annotations.model_dump(by_alias=True, exclude_none=True)
               if state_tool.annotations else None,
               call_service=service_tool.annotations.model_dump(by_alias=True, exclude_none=True)
               if service_tool.annotations else None)

        allowed = await client.call_tool("ha_get_state", {"entity_id": "lock.front_door"})
        expect(not allowed.is_error, f"allowed call: {text_of(allowed)}")
        expect(allowed.structured_content["entity_id"] == "lock.front_door", "structured")
        report("allowed", state=allowed.structured_content["state"])

        denied = await client.call_tool("ha_call_service", service_call("lock.front_door", "unlock"))
        expect(denied.is_error, "a denied call is a tool error")
        report("denied", text=text_of(denied), error=denied.structured_content["error"])

        invalid = await client.call_tool("ha_get_state", {"entity_id": "Not An Entity"})
        expect(invalid.is_error, f"invalid arguments are a tool error: {text_of(invalid)}")
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

        approved = await client.call_tool(
            "ha_call_service", service_call(ENTITIES["held"], "turn_on"),
            progress_callback=on_progress,
        )
        expect(not approved.is_error, f"approved while held: {text_of(approved)}")
        report("held", result=approved.structured_content)

        # Outlives the hold: answered "waiting", approved later, fetched by calling again.
        outlives = ENTITIES["outlives"]
        args = service_call(outlives, "turn_on")
        waiting = await client.call_tool("ha_call_service", args, progress_callback=on_progress)
        expect(waiting.is_error, f"a call that outlives the hold says it waits: {text_of(waiting)}")
        status = waiting.structured_content
        expect(status["status"] == "awaiting_approval", f"status {status}")
        request_id = status["request_id"]
        report("waiting", text=text_of(waiting), status=status, progress=progress)

        pending = await client.call_tool("gateway_request_status", {"request_id": request_id})
        expect(not pending.is_error, f"the status of a waiting call: {text_of(pending)}")
        expect(pending.structured_content["status"] == "awaiting_approval", "still waiting")

        await ask_test(f"HUMAN {outlives}")
        again = await client.call_tool("ha_call_service", args)
        expect(not again.is_error, f"the re-sent call gets the outcome: {text_of(again)}")
        report("fetched", result=again.structured_content)

        # Once received, the same arguments make a new call (asked again: it waits).
        fresh = await client.call_tool("ha_call_service", args)
        expect(fresh.is_error and fresh.structured_content["status"] == "awaiting_approval",
               f"a call after the outcome was received is a new request: {text_of(fresh)}")
        expect(fresh.structured_content["request_id"] != request_id, "a new request id")
        report("fresh", request_id=fresh.structured_content["request_id"])

        # The gateway restarts while the bridge runs: the next calls work.
        await ask_test("RESTART")
        after = await client.call_tool("ha_get_state", {"entity_id": "lock.front_door"})
        expect(not after.is_error, f"a call after the restart: {text_of(after)}")
        relisted = await client.list_tools()
        report("restarted", state=after.structured_content["state"],
               tools=len(relisted.tools))


asyncio.run(main())
