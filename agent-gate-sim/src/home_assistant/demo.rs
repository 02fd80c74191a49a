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

/// Home Assistant Core's `demo:` home (the part the end-to-end suite uses) and the suite's
/// own configuration, see [`super::HomeAssistant::core_demo`].
pub(super) fn core_demo(builder: super::HomeAssistantBuilder) -> super::HomeAssistantBuilder {
    let light = |id: &str, name: &str, state: &str| {
        Entity::new(id, state)
            .attribute("min_color_temp_kelvin", 2000)
            .attribute("max_color_temp_kelvin", 6535)
            .attribute("effect_list", json!(["rainbow", "none"]))
            .attribute("supported_color_modes", json!(["color_temp", "hs"]))
            .attribute("color_mode", json!(null))
            .attribute(
                "brightness",
                if state == "on" {
                    json!(180)
                } else {
                    json!(null)
                },
            )
            .name(name)
            .attribute("supported_features", 4)
    };
    let lock = |id: &str, name: &str, state: &str| {
        Entity::new(id, state)
            .name(name)
            .attribute("supported_features", 0)
    };
    let switch = |id: &str, name: &str, state: &str, icon: &str| {
        Entity::new(id, state).attribute("icon", icon).name(name)
    };
    let weather = |id: &str, name: &str| {
        Entity::new(id, "rainy")
            .attribute("temperature", 21.6)
            .attribute("humidity", 92)
            .attribute("pressure", 1099.0)
            .attribute("wind_speed", 0.5)
            .attribute("temperature_unit", "°C")
            .attribute("pressure_unit", "hPa")
            .attribute("wind_speed_unit", "m/s")
            .attribute("visibility_unit", "km")
            .attribute("precipitation_unit", "mm")
            .name(name)
            .attribute("supported_features", 3)
    };
    let daily = |condition: &str, precipitation: f64, high: f64, low: f64, chance: u32| json!({"condition": condition, "precipitation": precipitation, "temperature": high, "templow": low, "precipitation_probability": chance});
    let mut scene = serde_json::Map::new();
    scene.insert("input_boolean.agent_gate_test".into(), json!("on"));
    builder
        .location_name("agent-gate CI")
        .version("2025.4.4")
        .entity(light("light.bed_light", "Bed Light", "off"))
        .entity(light("light.ceiling_lights", "Ceiling Lights", "on"))
        .entity(light("light.kitchen_lights", "Kitchen Lights", "on"))
        .entity(light(
            "light.office_rgbw_lights",
            "Office RGBW Lights",
            "on",
        ))
        .entity(switch(
            "switch.decorative_lights",
            "Decorative Lights",
            "on",
            "mdi:lightbulb",
        ))
        .entity(switch("switch.ac", "AC", "off", "mdi:air-conditioner"))
        .entity(lock("lock.front_door", "Front Door", "locked"))
        .entity(lock("lock.kitchen_door", "Kitchen Door", "unlocked"))
        .entity(lock(
            "lock.poorly_installed_door",
            "Poorly Installed Door",
            "unlocked",
        ))
        .entity(
            Entity::new("sensor.outside_temperature", "15.6")
                .attribute("state_class", "measurement")
                .attribute("unit_of_measurement", "°C")
                .attribute("device_class", "temperature")
                .name("Outside Temperature")
                .changed_ago(MINUTE * 30)
                .past_state(hours(3), "14.9"),
        )
        .entity(
            Entity::new("sensor.outside_humidity", "54")
                .attribute("state_class", "measurement")
                .attribute("unit_of_measurement", "%")
                .attribute("device_class", "humidity")
                .name("Outside Humidity"),
        )
        .entity(
            Entity::new("calendar.calendar_1", "off")
                .attribute("message", "Future Event")
                .attribute("all_day", false)
                .attribute("description", "Future Description")
                .attribute("location", "Future Location")
                .name("Calendar 1"),
        )
        .entity(
            Entity::new("calendar.calendar_2", "on")
                .attribute("message", "Current Event")
                .attribute("all_day", false)
                .name("Calendar 2"),
        )
        .calendar_event(
            "calendar.calendar_1",
            super::CalendarEvent::new("Future Event", 30 * 60, HOUR)
                .description("Future Description")
                .location("Future Location"),
        )
        .calendar_event(
            "calendar.calendar_2",
            super::CalendarEvent::new("Current Event", -30 * 60, HOUR),
        )
        .entity(weather("weather.demo_weather_south", "Demo Weather South"))
        .entity(weather("weather.demo_weather_north", "Demo Weather North"))
        .forecast(
            "weather.demo_weather_south",
            vec![
                daily("rainy", 1.0, 22.0, 15.0, 60),
                daily("rainy", 5.0, 19.0, 8.0, 30),
                daily("cloudy", 0.0, 15.0, 9.0, 10),
                daily("sunny", 0.0, 12.0, 6.0, 0),
                daily("partlycloudy", 2.0, 14.0, 7.0, 20),
                daily("rainy", 15.0, 18.0, 7.0, 0),
                daily("fog", 0.2, 21.0, 12.0, 100),
            ],
        )
        .forecast(
            "weather.demo_weather_north",
            vec![
                daily("snowy", 2.0, -23.3, -26.1, 100),
                daily("sunny", 0.0, -22.8, -24.4, 0),
            ],
        )
        .entity(
            Entity::new("input_boolean.agent_gate_test", "off")
                .attribute("editable", false)
                .name("agent-gate test"),
        )
        .entity(
            Entity::new("script.agent_gate_note", "off")
                .attribute("last_triggered", json!(null))
                .attribute("mode", "single")
                .attribute("current", 0)
                .name("agent-gate note"),
        )
        .scene("scene.agent_gate_evening", "agent-gate evening", scene)
        .area("living_room", "Living Room", Vec::<String>::new())
        .area("kitchen", "Kitchen", Vec::<String>::new())
        .area("bedroom", "Bedroom", ["light.bed_light"])
}
