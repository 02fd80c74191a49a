"""A Tasks-declaring MCP client against agent-gate, driven by gateway/tests/mcp_python.rs.

The Python MCP SDK (2.3.0) ships no client for the Tasks extension; the `Tasks` extension
below is the minimal one the SDK's extension API allows: it declares
`io.modelcontextprotocol/tasks`, takes a `resultType: "task"` answer to `tools/call` and polls
`tasks/get` until the task ends (riding out a gateway restart: connection errors are retried).

Talks to the test over stdio: `TASK <id> <entity>` says a task exists (the test then restarts
the gateway and approves it, or leaves it), and waits for `DONE`; `RESULT {...}` lines report.
"""

import asyncio
import json
import os
import sys
from typing import Any, Literal

import httpx2
from mcp import Client
from mcp.client import ClaimContext, ClientExtension, ResultClaim
from mcp.client.streamable_http import streamable_http_client
from mcp.types import CallToolResult, Request, RequestParams, Result
from pydantic import ConfigDict

URL = os.environ["MCP_URL"]
TOKEN = os.environ["MCP_TOKEN"]
TASKS = "io.modelcontextprotocol/tasks"


def expect(condition, what):
    if not condition:
        print(f"FAILED: {what}", file=sys.stderr, flush=True)
        sys.exit(1)


def report(step, **fields):
    print("RESULT " + json.dumps({"step": step, **fields}), flush=True)


class TaskHandle(Result):
    model_config = ConfigDict(extra="allow")
    result_type: Literal["task"]
    task_id: str
    status: str
    poll_interval_ms: int | None = None


class TaskIdParams(RequestParams):
    task_id: str


class GetTaskRequest(Request[TaskIdParams, Literal["tasks/get"]]):
    method: Literal["tasks/get"] = "tasks/get"
    name_param = "taskId"


class CancelTaskRequest(Request[TaskIdParams, Literal["tasks/cancel"]]):
    method: Literal["tasks/cancel"] = "tasks/cancel"
    name_param = "taskId"


class DetailedTask(Result):
    model_config = ConfigDict(extra="allow")
    task_id: str
    status: str
    status_message: str | None = None
    result: dict[str, Any] | None = None


class Tasks(ClientExtension):
    identifier = TASKS

    def __init__(self):
        self.cancel = False
        self.seen = []

    def claims(self):
        return [ResultClaim(result_type="task", model=TaskHandle, resolve=self._resolve)]

    async def _resolve(self, handle: TaskHandle, ctx: ClaimContext) -> CallToolResult:
        self.seen.append(handle.status)
        entity = self.entity
        print(f"TASK {handle.task_id} {entity}", flush=True)
        line = await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
        expect(line.strip() == "DONE", f"the test answered {line!r}")
        if self.cancel:
            await ctx.session.send_request(
                CancelTaskRequest(params=TaskIdParams(task_id=handle.task_id)), Result)
        for _ in range(200):
            try:
                task = await ctx.session.send_request(
                    GetTaskRequest(params=TaskIdParams(task_id=handle.task_id)), DetailedTask)
            except Exception as error:  # the gateway restarting: try again
                print(f"poll failed ({type(error).__name__}), retrying", file=sys.stderr)
                await asyncio.sleep(0.2)
                continue
            self.seen.append(task.status)
            if task.status in ("completed", "failed", "cancelled"):
                report("task", task_id=handle.task_id, status=task.status,
                       message=task.status_message, seen=self.seen)
                return CallToolResult.model_validate(
                    task.result or {"content": [], "isError": True})
            await asyncio.sleep(0.2)
        expect(False, "the task did not end")


async def main():
    tasks = Tasks()
    headers = {"Authorization": f"Bearer {TOKEN}"}
    async with httpx2.AsyncClient(headers=headers, timeout=30) as http:
        async with Client(streamable_http_client(URL, http_client=http), mode="2026-07-28",
                          extensions=[tasks]) as client:
            # Approved by a human after the gateway restarted.
            tasks.entity = "light.bedroom"
            approved = await client.call_tool(
                "ha_call_service",
                {"domain": "light", "service": "turn_off", "entity_id": "light.bedroom"})
            expect(not approved.is_error, f"approved task: {approved}")
            report("approved", result=approved.structured_content)

            # Cancelled by the agent while it waits.
            tasks.entity = "switch.coffee_maker"
            tasks.cancel = True
            cancelled = await client.call_tool(
                "ha_call_service",
                {"domain": "switch", "service": "turn_off", "entity_id": "switch.coffee_maker"})
            expect(cancelled.is_error, "a cancelled task ends without a result")


asyncio.run(main())
