//! The history's search: the query parameters of `GET /approvals` and
//! `GET /approvals/api/history` (`agent`, `tool`, `decision`, `decider`, `limit`, `offset`),
//! turned into a [`HistoryQuery`] the store runs with bound parameters, and the links to the
//! neighbouring pages.

use serde::Deserialize;

use crate::store::{HistoryDecision, HistoryQuery};

/// The largest page the history shows or the API returns.
pub(super) const MAX_PAGE: u32 = 200;

/// The history's query parameters as sent (every one optional; empty means "any").
#[derive(Debug, Default, Clone, Deserialize)]
pub(super) struct HistoryParams {
    #[serde(default)]
    pub agent: Option<String>,
    #[serde(default)]
    pub tool: Option<String>,
    #[serde(default)]
    pub decision: Option<String>,
    #[serde(default)]
    pub decider: Option<String>,
    #[serde(default)]
    pub limit: Option<String>,
    #[serde(default)]
    pub offset: Option<String>,
}

/// A search the page shows and links to: the filters (trimmed, empty ones dropped) and the page.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Search {
    pub agent: Option<String>,
    pub tool: Option<String>,
    pub decision: Option<HistoryDecision>,
    pub decider: Option<String>,
    pub limit: u32,
    pub offset: u32,
}

/// The longest filter text accepted (longer is a mistake, not a search).
const MAX_FILTER_CHARS: usize = 200;

fn filter(text: Option<String>, name: &str) -> Result<Option<String>, String> {
    let Some(text) = text else { return Ok(None) };
    let text = text.trim();
    if text.chars().count() > MAX_FILTER_CHARS {
        return Err(format!("`{name}` is at most {MAX_FILTER_CHARS} characters"));
    }
    Ok((!text.is_empty()).then(|| text.to_owned()))
}

fn number(text: Option<String>, name: &str, max: u32) -> Result<Option<u32>, String> {
    match text.as_deref().map(str::trim) {
        None | Some("") => Ok(None),
        Some(text) => match text.parse::<u32>() {
            Ok(n) if n <= max => Ok(Some(n)),
            _ => Err(format!("`{name}` must be a whole number from 0 to {max}")),
        },
    }
}

impl Search {
    /// The search `params` ask for; `default_limit` when they name no page size. `Err` says
    /// which parameter is wrong.
    pub fn parse(params: HistoryParams, default_limit: u32) -> Result<Self, String> {
        let decision = match params.decision.as_deref().map(str::trim) {
            None | Some("") => None,
            Some(name) => Some(HistoryDecision::from_name(name).ok_or_else(|| {
                format!(
                    "unknown `decision` {name:?}: use one of {}",
                    HistoryDecision::ALL.map(HistoryDecision::as_str).join(", ")
                )
            })?),
        };
        let limit = number(params.limit, "limit", MAX_PAGE)?
            .unwrap_or(default_limit)
            .clamp(1, MAX_PAGE);
        Ok(Self {
            agent: filter(params.agent, "agent")?,
            tool: filter(params.tool, "tool")?,
            decision,
            decider: filter(params.decider, "decider")?,
            limit,
            offset: number(params.offset, "offset", u32::MAX)?.unwrap_or(0),
        })
    }

    /// Whether any filter is set.
    pub fn filtered(&self) -> bool {
        self.agent.is_some()
            || self.tool.is_some()
            || self.decision.is_some()
            || self.decider.is_some()
    }

    /// The store query: one row more than a page, so the page knows whether an older one exists.
    pub fn query(&self, extra: u32) -> HistoryQuery {
        HistoryQuery {
            agent_id: self.agent.clone(),
            tool: self.tool.clone(),
            decision: self.decision,
            decider: self.decider.clone(),
            limit: self.limit.saturating_add(extra),
            offset: self.offset,
        }
    }

    /// The query string (without `?`) of this search at `offset`, percent-encoded.
    pub fn query_string(&self, offset: u32) -> String {
        let mut pairs = Vec::new();
        for (name, value) in [
            ("agent", self.agent.as_deref()),
            ("tool", self.tool.as_deref()),
            ("decision", self.decision.map(HistoryDecision::as_str)),
            ("decider", self.decider.as_deref()),
        ] {
            if let Some(value) = value {
                let value = percent_encoding::utf8_percent_encode(
                    value,
                    percent_encoding::NON_ALPHANUMERIC,
                );
                pairs.push(format!("{name}={value}"));
            }
        }
        if offset > 0 {
            pairs.push(format!("offset={offset}"));
        }
        pairs.join("&")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(pairs: &[(&str, &str)]) -> HistoryParams {
        let mut params = HistoryParams::default();
        for (name, value) in pairs {
            let value = Some((*value).to_owned());
            match *name {
                "agent" => params.agent = value,
                "tool" => params.tool = value,
                "decision" => params.decision = value,
                "decider" => params.decider = value,
                "limit" => params.limit = value,
                "offset" => params.offset = value,
                other => panic!("no parameter {other}"),
            }
        }
        params
    }

    #[test]
    fn empty_filters_mean_any_and_numbers_are_checked() {
        let search = Search::parse(params(&[("agent", " "), ("tool", "")]), 50).unwrap();
        assert!(!search.filtered());
        assert_eq!((search.limit, search.offset), (50, 0));
        let search = Search::parse(
            params(&[("agent", " pi "), ("decision", "denied"), ("limit", "900")]),
            50,
        );
        assert!(search.is_err(), "a page larger than the maximum is refused");
        let search = Search::parse(
            params(&[("agent", " pi "), ("decision", "denied"), ("offset", "20")]),
            50,
        )
        .unwrap();
        assert_eq!(search.agent.as_deref(), Some("pi"));
        assert_eq!(search.decision, Some(HistoryDecision::Denied));
        assert_eq!(
            search.query_string(70),
            "agent=pi&decision=denied&offset=70"
        );
        let error = Search::parse(params(&[("decision", "maybe")]), 50).unwrap_err();
        assert!(
            error.contains("approved, denied, expired, cancelled"),
            "{error}"
        );
        assert!(Search::parse(params(&[("offset", "-1")]), 50).is_err());
    }

    #[test]
    fn filters_with_markup_are_encoded_in_links() {
        let search = Search::parse(params(&[("decider", "a&b=<c>")]), 50).unwrap();
        assert_eq!(search.query_string(0), "decider=a%26b%3D%3Cc%3E");
    }
}
