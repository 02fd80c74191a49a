//! The companion app side of the simulator: phones registered with the `mobile_app`
//! integration, the `notify.mobile_app_<device>` service each one gets, and the pushes it
//! records (what Home Assistant would hand to the push relay for that phone).
//!
//! Pressing an action on a phone makes the companion app fire the
//! `mobile_app_notification_action` event through its webhook, with the context of the user
//! the phone is registered to; [`HomeAssistant::press_action`](super::HomeAssistant::press_action)
//! does the same here.

use serde_json::{Map, Value};

/// A notification sent to a registered phone through `notify.mobile_app_<device>`.
#[derive(Debug, Clone, PartialEq)]
pub struct MobilePush {
    /// The device's service name (`pixel_7` of `notify.mobile_app_pixel_7`).
    pub device: String,
    /// `message` (for Android, `clear_notification` removes the notification of `data.tag`).
    pub message: String,
    /// `title`, if any.
    pub title: Option<String>,
    /// `data` (`tag`, `actions`, ...), empty when absent.
    pub data: Map<String, Value>,
}

impl MobilePush {
    /// `data.tag`, if any.
    pub fn tag(&self) -> Option<&str> {
        self.data.get("tag").and_then(Value::as_str)
    }

    /// The `action` ids of `data.actions`, in order.
    pub fn action_ids(&self) -> Vec<String> {
        self.actions()
            .iter()
            .filter_map(|a| a.get("action").and_then(Value::as_str).map(str::to_owned))
            .collect()
    }

    /// The `(action, title)` pairs of `data.actions`, in order.
    pub fn actions(&self) -> Vec<Map<String, Value>> {
        match self.data.get("actions") {
            Some(Value::Array(actions)) => actions
                .iter()
                .filter_map(|a| a.as_object().cloned())
                .collect(),
            _ => Vec::new(),
        }
    }
}

/// The phone `device` of a `notify` service name, if it is `mobile_app_<device>` of a
/// registered phone.
pub(super) fn device_of<'a>(devices: &[String], service: &'a str) -> Option<&'a str> {
    service
        .strip_prefix("mobile_app_")
        .filter(|device| devices.iter().any(|d| d == device))
}

/// Checks the service data of `notify.mobile_app_<device>` as Home Assistant's notify
/// schema does (`message` is required; `title` is text; `data` a mapping) and builds the
/// push.
pub(super) fn push(device: &str, data: Option<Value>) -> Result<MobilePush, String> {
    let fields = match data {
        None | Some(Value::Null) => Map::new(),
        Some(Value::Object(map)) => map,
        Some(_) => return Err("expected a dictionary".to_owned()),
    };
    let text = |value: &Value| match value {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    };
    let message = fields
        .get("message")
        .and_then(text)
        .ok_or_else(|| "required key not provided @ data['message']".to_owned())?;
    let title = match fields.get("title") {
        None | Some(Value::Null) => None,
        Some(value) => Some(
            text(value)
                .ok_or_else(|| "expected str for dictionary value @ data['title']".to_owned())?,
        ),
    };
    let data = match fields.get("data") {
        None | Some(Value::Null) => Map::new(),
        Some(Value::Object(map)) => map.clone(),
        Some(_) => {
            return Err("expected a dictionary for dictionary value @ data['data']".to_owned());
        }
    };
    if let Some(key) = fields
        .keys()
        .find(|k| !matches!(k.as_str(), "message" | "title" | "data" | "target"))
    {
        return Err(format!("extra keys not allowed @ data['{key}']"));
    }
    Ok(MobilePush {
        device: device.to_owned(),
        message,
        title,
        data,
    })
}
