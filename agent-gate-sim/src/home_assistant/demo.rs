//! The demo home: a small flat with the devices agents are usually asked about.

use std::time::Duration;

use serde_json::json;

use super::Entity;

const HOUR: Duration = Duration::from_secs(3600);
const MINUTE: Duration = Duration::from_secs(60);

fn hours(n: u64) -> Duration {
    HOUR * u32::try_from(n).unwrap_or(u32::MAX)
}

/// The demo home's entities, with a day of history for the sensors.
pub(super) fn entities() -> Vec<Entity> {
    // Colour mode and brightness follow the state (see `services::normalize_light`).
    let light = |id: &str, name: &str, state: &str, brightness: Option<u8>| {
        Entity::new(id, state)
            .attribute("supported_color_modes", json!(["brightness"]))
            .attribute("color_mode", json!(null))
            .attribute("brightness", brightness.map_or(json!(null), |b| json!(b)))
            .name(name)
            .attribute("supported_features", 32)
    };
    let mut temperature = Entity::new("sensor.living_room_temperature", "21.4")
        .attribute("state_class", "measurement")
        .attribute("unit_of_measurement", "°C")
        .attribute("device_class", "temperature")
        .name("Living room temperature")
        .changed_ago(MINUTE * 12);
    for (hours_ago, value) in [
        (20, "19.8"),
        (16, "19.5"),
        (12, "20.1"),
        (8, "20.9"),
        (4, "21.7"),
        (2, "21.2"),
    ] {
        temperature = temperature.past_state(hours(hours_ago), value);
    }
    let mut humidity = Entity::new("sensor.outdoor_humidity", "71")
        .attribute("state_class", "measurement")
        .attribute("unit_of_measurement", "%")
        .attribute("device_class", "humidity")
        .name("Outdoor humidity")
        .changed_ago(MINUTE * 25);
    for (hours_ago, value) in [(18, "82"), (12, "77"), (6, "69"), (3, "74")] {
        humidity = humidity.past_state(hours(hours_ago), value);
    }
    vec![
        light("light.living_room", "Living room light", "on", Some(180))
            .changed_ago(MINUTE * 45)
            .past_state(hours(9), "off"),
        light("light.kitchen", "Kitchen light", "off", None)
            .changed_ago(hours(1))
            .past_state(hours(3), "on"),
        light("light.bedroom", "Bedroom light", "off", None).changed_ago(hours(14)),
        Entity::new("lock.front_door", "locked")
            .name("Front door")
            .attribute("supported_features", 0)
            .changed_ago(hours(2))
            .past_state(hours(10), "unlocked")
            .past_state(hours(11), "locked"),
        Entity::new("switch.coffee_maker", "off")
            .name("Coffee maker")
            .attribute("icon", "mdi:coffee")
            .changed_ago(hours(5))
            .past_state(hours(6), "on"),
        Entity::new("climate.thermostat", "heat")
            .attribute("hvac_modes", json!(["off", "heat", "cool", "auto"]))
            .attribute("min_temp", 7)
            .attribute("max_temp", 35)
            .attribute("target_temp_step", 0.5)
            .attribute("current_temperature", 21.4)
            .attribute("temperature", 21.5)
            .name("Thermostat")
            .attribute("supported_features", 385)
            .changed_ago(hours(8)),
        Entity::new("cover.garage_door", "closed")
            .attribute("current_position", 0)
            .attribute("device_class", "garage")
            .name("Garage door")
            .attribute("supported_features", 15)
            .changed_ago(hours(7))
            .past_state(hours(8), "open"),
        temperature,
        humidity,
        Entity::new("binary_sensor.front_door", "off")
            .attribute("device_class", "door")
            .name("Front door sensor")
            .changed_ago(hours(2))
            .past_state(hours(10), "on"),
        Entity::new("input_boolean.guest_mode", "off")
            .name("Guest mode")
            .attribute("editable", true)
            .attribute("icon", "mdi:account-multiple")
            .changed_ago(hours(20)),
        Entity::new("sun.sun", "above_horizon")
            .attribute("elevation", 23.1)
            .attribute("rising", false)
            .name("Sun")
            .changed_ago(hours(6)),
    ]
}
