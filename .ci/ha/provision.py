"""Makes a fresh Home Assistant usable by the agent-gate suite, without a browser.

1. Onboarding's user step over HTTP (creates the owner and the default areas Living Room,
   Kitchen and Bedroom) and the authorization code exchanged for an access token.
2. Over the WebSocket API: a long-lived access token, and light.bed_light put in the
   Bedroom so that `ha_get_areas` has an area with an entity.
3. Waits until Home Assistant reports `RUNNING` (GET /api/core/state).

Prints the long-lived token on stdout, then on a second line the id of its user (the
`context.user_id` of events it fires: the phone approver's `users:` in the CI test). Uses aiohttp, which Home Assistant itself depends on.
Usage: python provision.py http://127.0.0.1:18123 TIMEOUT_SECONDS HASS_PID
(gives up as soon as the Home Assistant process HASS_PID has exited).
"""

import asyncio
import os
import sys
import time

import aiohttp


HASS_PID = None


def hass_alive():
    if HASS_PID is None:
        return True
    try:
        os.kill(HASS_PID, 0)
    except OSError:
        return False
    # A zombie (exited, not yet reaped by its parent shell) counts as gone.
    try:
        with open(f"/proc/{HASS_PID}/stat") as stat:
            return stat.read().split(") ")[-1][:1] != "Z"
    except OSError:
        return False


async def wait_for(session, url, deadline, what, headers=None):
    last = None
    while time.monotonic() < deadline:
        if not hass_alive():
            raise SystemExit(f"provision: Home Assistant (pid {HASS_PID}) exited while waiting for {what}")
        try:
            async with session.get(url, headers=headers) as response:
                if response.status == 200:
                    return await response.json()
                last = f"HTTP {response.status}"
        except aiohttp.ClientError as error:
            last = repr(error)
        await asyncio.sleep(0.5)
    raise SystemExit(f"provision: {what} did not answer in time (last: {last})")


async def main(base, timeout):
    deadline = time.monotonic() + timeout
    client_id = f"{base}/"
    async with aiohttp.ClientSession() as session:
        steps = await wait_for(session, f"{base}/api/onboarding", deadline, "onboarding")
        if any(step["step"] == "user" and step["done"] for step in steps):
            raise SystemExit("provision: this Home Assistant is already onboarded; start from an empty config dir")
        async with session.post(
            f"{base}/api/onboarding/users",
            json={
                "client_id": client_id,
                "name": "agent-gate CI",
                "username": "agentgate",
                "password": "agent-gate-ci-password",
                "language": "en",
            },
        ) as response:
            if response.status != 200:
                raise SystemExit(f"provision: onboarding user step: HTTP {response.status}: {await response.text()}")
            code = (await response.json())["auth_code"]
        async with session.post(
            f"{base}/auth/token",
            data={"grant_type": "authorization_code", "code": code, "client_id": client_id},
        ) as response:
            if response.status != 200:
                raise SystemExit(f"provision: token exchange: HTTP {response.status}: {await response.text()}")
            access = (await response.json())["access_token"]

        async with session.ws_connect(f"{base}/api/websocket") as ws:
            assert (await ws.receive_json())["type"] == "auth_required"
            await ws.send_json({"type": "auth", "access_token": access})
            reply = await ws.receive_json()
            if reply["type"] != "auth_ok":
                raise SystemExit(f"provision: WebSocket auth failed: {reply}")

            async def command(n, payload):
                await ws.send_json({"id": n, **payload})
                while True:
                    message = await ws.receive_json()
                    if message.get("id") == n:
                        if not message.get("success"):
                            raise SystemExit(f"provision: {payload['type']} failed: {message}")
                        return message.get("result")

            token = await command(
                1,
                {"type": "auth/long_lived_access_token", "client_name": "agent-gate CI", "lifespan": 30},
            )
            headers = {"Authorization": f"Bearer {token}"}
            state = await wait_for(session, f"{base}/api/core/state", deadline, "/api/core/state", headers)
            while state.get("state") != "RUNNING":
                if time.monotonic() > deadline:
                    raise SystemExit(f"provision: Home Assistant is {state} after {timeout} s, not RUNNING")
                await asyncio.sleep(0.5)
                state = await wait_for(session, f"{base}/api/core/state", deadline, "/api/core/state", headers)
            # The demo's entities are registered once it is running.
            while True:
                async with session.get(f"{base}/api/states/light.bed_light", headers=headers) as response:
                    if response.status == 200:
                        break
                if time.monotonic() > deadline:
                    raise SystemExit("provision: light.bed_light of the demo integration never appeared")
                await asyncio.sleep(0.5)
            await command(
                2,
                {"type": "config/entity_registry/update", "entity_id": "light.bed_light", "area_id": "bedroom"},
            )
            # The phone approver counts only presses of the users it lists (`users:`).
            user_id = (await command(3, {"type": "auth/current_user"}))["id"]
    print(token)
    print(user_id)


if __name__ == "__main__":
    if len(sys.argv) > 3:
        HASS_PID = int(sys.argv[3])
    asyncio.run(main(sys.argv[1].rstrip("/"), float(sys.argv[2]) if len(sys.argv) > 2 else 240))
