// Calls that do not match the manifest: unknown method, wrong argument
// count, wrong argument type, unknown optional argument.
use agent_gate::prelude::*;

async fn agent(gw: AgentGateClient) -> Result<(), Error> {
    let _ = gw.ha_get_stat("sensor.kitchen").await?;
    let _ = gw.ha_get_state().await?;
    let _ = gw.ha_get_state("sensor.kitchen", "extra").await?;
    let _ = gw.ha_get_state(42).await?;
    let _ = gw.ha_call_service("light", "turn_on").brightness(128).await?;
    let state: State = gw.ha_get_states().await?;
    let _ = state;
    Ok(())
}

fn main() {
    let _ = agent;
}
