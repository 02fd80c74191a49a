//! The HTML of the approval page, its login form and the result page of the form fallback.
//! Every value is escaped with [`escape`]; request text an agent chose (signature, request
//! id, arguments, errors) is first passed through [`crate::messengers::visible`], so hidden
//! characters show as `\u{202e}` under a warning. The inline style and script carry the
//! response's CSP nonce and nothing is loaded from elsewhere.

use std::fmt::Write;
use std::time::Duration;

use super::history::Search;
use super::{BASE_PATH, HistoryView, PendingView};
use crate::approvals::grant_label;
use crate::messengers::visible;
use crate::store::{Grant, HistoryDecision, Timestamp, rfc3339};

/// HTML-escapes text for element content and double-quoted attribute values.
pub(super) fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

const STYLE: &str = r#"
:root{color-scheme:light dark;--bg:#f6f7f9;--card:#fff;--fg:#1b1f24;--muted:#5b6470;--line:#d8dde3;--allow:#1a7f37;--deny:#c0362c;--soon:#9a6700}
@media (prefers-color-scheme:dark){:root{--bg:#111418;--card:#1b2027;--fg:#e6e9ed;--muted:#9aa4af;--line:#303843;--soon:#d29922}}
*{box-sizing:border-box}
body{margin:0;font:16px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;background:var(--bg);color:var(--fg)}
header{display:flex;flex-wrap:wrap;gap:.5rem;align-items:center;justify-content:space-between;padding:.75rem 1rem;border-bottom:1px solid var(--line);background:var(--card)}
h1{font-size:1.2rem;margin:0}
h2{font-size:1.05rem;margin:1.25rem 0 .5rem}
main{max-width:80rem;margin:0 auto;padding:0 1rem 2rem}
.cols{display:grid;grid-template-columns:minmax(0,1fr);gap:0 1.5rem}
@media (min-width:900px){.cols{grid-template-columns:minmax(0,3fr) minmax(0,2fr)}}
ul{list-style:none;margin:0;padding:0}
.card{background:var(--card);border:1px solid var(--line);border-radius:.6rem;padding:.75rem;margin:.6rem 0}
.sig{font-weight:600;overflow-wrap:anywhere}
.meta{color:var(--muted);font-size:.85rem;overflow-wrap:anywhere}
.hint{color:var(--muted);font-size:.85rem;margin:0}
.affects{font-size:.9rem;margin:.35rem 0;display:flex;flex-wrap:wrap;gap:.3rem;align-items:baseline}
ul.targets{display:flex;flex-wrap:wrap;gap:.3rem}
ul.targets li{font-family:ui-monospace,SFMono-Regular,Menlo,monospace;font-size:.85rem;background:var(--bg);border:1px solid var(--line);border-radius:.35rem;padding:.05rem .4rem;overflow-wrap:anywhere}
ul.scope li{display:block}
.expiry{margin:.35rem 0;font-size:.95rem}
time.countdown{font-weight:700;font-variant-numeric:tabular-nums}
time.countdown.soon{color:var(--soon)}
pre{white-space:pre-wrap;overflow-wrap:anywhere;font-size:.85rem;background:var(--bg);border-radius:.4rem;padding:.5rem;margin:.5rem 0;max-height:16rem;overflow:auto}
.actions{display:flex;flex-wrap:wrap;gap:.5rem}
button,.button{font:inherit;border:0;border-radius:.45rem;padding:.6rem 1rem;min-width:6rem;min-height:2.75rem;cursor:pointer;color:#fff}
button.allow{background:var(--allow)}button.deny{background:var(--deny)}
input.reason{flex:1 1 12rem;min-width:0;min-height:2.75rem;font:inherit;padding:.45rem .6rem;border:1px solid var(--line);border-radius:.4rem;background:var(--card);color:var(--fg)}
button.plain{background:transparent;color:var(--muted);border:1px solid var(--line);min-width:0;padding:.35rem .7rem}
.actions button{flex:1 1 auto}
form.search{display:grid;grid-template-columns:repeat(2,minmax(0,1fr));gap:.5rem;margin:.5rem 0}
form.search label{display:flex;flex-direction:column;font-size:.8rem;color:var(--muted)}
form.search input,form.search select{font:inherit;color:var(--fg);background:var(--card);border:1px solid var(--line);border-radius:.4rem;padding:.45rem .5rem;min-height:2.75rem}
form.search .go{display:flex;gap:.5rem;align-items:end}
form.search .go button{flex:1}
.pager{display:flex;justify-content:space-between;gap:.5rem;margin:.5rem 0}
.pager a{color:var(--fg);padding:.6rem .2rem}
.state{font-weight:600}
.state-executed,.state-approved,.state-executing{color:var(--allow)}
.state-denied,.state-failed,.state-expired,.state-cancelled{color:var(--deny)}
#status{min-height:1.4rem;font-weight:600}
.live{font-size:.8rem;color:var(--muted)}
.empty{color:var(--muted)}
input[type=password]{font:inherit;width:100%;padding:.6rem;border:1px solid var(--line);border-radius:.45rem;margin:.5rem 0;background:var(--card);color:var(--fg)}
.error{color:var(--deny);font-weight:600}
.warn{color:var(--deny);font-weight:600;border:2px solid var(--deny);border-radius:.4rem;padding:.4rem .6rem;margin:.4rem 0}
@media (max-width:600px){
main{padding:0 .6rem 2rem}
.actions{display:grid;grid-template-columns:1fr 1fr}
.actions button{min-width:0;min-height:3rem}
input.reason{grid-column:1/-1}
form.search{grid-template-columns:minmax(0,1fr)}
}
"#;

/// The page's script: the countdowns tick every second; the lists are reloaded (as the
/// server renders them) when the event stream says something changed; buttons send the
/// JSON API requests and say what happened in `#status`. Without it the page is the same
/// lists and plain form posts.
const SCRIPT: &str = r##"
(function(){
  "use strict";
  var csrf = document.querySelector('meta[name="csrf-token"]').content;
  var statusBox = document.getElementById("status");
  var live = document.getElementById("live");
  function two(n){return (n<10?"0":"")+n;}
  function left(ms){
    if(ms<=0)return "expired";
    var s=Math.floor(ms/1000),h=Math.floor(s/3600),m=Math.floor(s%3600/60),r=s%60;
    return (h?h+":"+two(m):String(m))+":"+two(r)+" left";
  }
  function stamp(){var now=String(Date.now());document.querySelectorAll("time.countdown:not([data-t0])").forEach(function(t){t.dataset.t0=now;});}
  function tick(){
    var now=Date.now();
    document.querySelectorAll("time.countdown[data-t0]").forEach(function(t){
      var ms=Number(t.dataset.leftMs)-(now-Number(t.dataset.t0));
      t.textContent=left(ms);t.classList.toggle("soon",ms<60000);
    });
  }
  stamp();tick();setInterval(tick,1000);
  var LISTS=["pending","pending-count","grants","grants-count","always","always-count","history","pager"];
  var loading=false, again=false;
  function refresh(){
    if(loading){again=true;return;}
    loading=true;
    fetch(location.pathname+location.search,{credentials:"same-origin",headers:{"Accept":"text/html"}})
    .then(function(r){if(!r.ok)throw new Error(r.status);return r.text();})
    .then(function(text){
      var doc=new DOMParser().parseFromString(text,"text/html");
      var reasons={};
      document.querySelectorAll("#pending li.card").forEach(function(c){var i=c.querySelector("input.reason");if(i&&i.value)reasons[c.dataset.agent+"\n"+c.dataset.request]=i.value;});
      LISTS.forEach(function(id){
        var fresh=doc.getElementById(id), old=document.getElementById(id);
        if(!fresh||!old)return;
        old.replaceChildren.apply(old,Array.prototype.slice.call(fresh.childNodes).map(function(n){return document.adoptNode(n);}));
      });
      document.querySelectorAll("#pending li.card").forEach(function(c){var v=reasons[c.dataset.agent+"\n"+c.dataset.request];var i=c.querySelector("input.reason");if(v&&i)i.value=v;});
      stamp();tick();
    }).catch(function(e){statusBox.textContent="Could not refresh ("+e.message+"); reload the page.";})
    .then(function(){loading=false;if(again){again=false;refresh();}});
  }
  function post(path, body, buttons, failed){
    buttons.forEach(function(b){b.disabled=true;});
    fetch(path,{method:"POST",credentials:"same-origin",headers:{"X-CSRF-Token":csrf,"Accept":"application/json","Content-Type":"application/json"},body:body})
      .then(function(r){return r.json();})
      .then(function(body){statusBox.textContent=body.message||body.error||"";})
      .catch(function(e){statusBox.textContent=failed+" ("+e.message+").";})
      .then(refresh);
  }
  document.getElementById("pending").addEventListener("click",function(ev){
    var b=ev.target.closest("button[data-verdict]");if(!b)return;
    ev.preventDefault();
    var card=b.closest("li.card");
    var input=card.querySelector("input.reason");
    var reason=input?input.value.trim():"", verdict=b.dataset.verdict;
    var body=(verdict==="deny"&&reason)?JSON.stringify({reason:reason}):(b.dataset.always?JSON.stringify({always:true}):(b.dataset.grant?JSON.stringify({grant_minutes:Number(b.dataset.grant)}):""));
    post("BASE/api/"+encodeURIComponent(card.dataset.agent)+"/"+encodeURIComponent(card.dataset.request)+"/"+verdict,body,Array.prototype.slice.call(card.querySelectorAll("button")),"The decision was not sent");
  });
  document.addEventListener("click",function(ev){
    var b=ev.target.closest("button[data-revoke]");if(!b)return;
    ev.preventDefault();
    post("BASE/api/grants/"+encodeURIComponent(b.dataset.revoke)+"/revoke","",[b],"The revocation was not sent");
  });
  if(window.EventSource){
    var source=new EventSource("BASE/api/events");
    source.addEventListener("open",function(){live.textContent="live";refresh();});
    source.addEventListener("error",function(){live.textContent="reconnecting\u2026";});
    ["pending","resolved","refresh"].forEach(function(name){source.addEventListener(name,refresh);});
  } else {
    setInterval(refresh,5000);
  }
})();
"##;

fn head(out: &mut String, title: &str, nonce: &str, csrf: Option<&str>) {
    out.push_str("<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">");
    out.push_str("<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">");
    out.push_str("<meta name=\"referrer\" content=\"same-origin\">");
    if let Some(csrf) = csrf {
        let _ = write!(
            out,
            "<meta name=\"csrf-token\" content=\"{}\">",
            escape(csrf)
        );
    }
    let _ = write!(
        out,
        "<title>{}</title><style nonce=\"{}\">{STYLE}</style></head>",
        escape(title),
        escape(nonce)
    );
}

/// What the approval page shows.
pub(super) struct PageView<'a> {
    /// The requests waiting, soonest expiry first.
    pub pending: &'a [PendingView],
    /// The live grants, timed and "always".
    pub grants: &'a [Grant],
    /// One page of the history, plus one more row if an older page exists.
    pub history: &'a [HistoryView],
    /// The history's search.
    pub search: &'a Search,
    /// The "allow for" buttons.
    pub grant_durations: &'a [Duration],
    /// When the page is rendered (the countdowns start from it).
    pub now: Timestamp,
    /// Who decides here (`web:<name>`).
    pub actor: &'a str,
    /// The session's CSRF token, carried by every form.
    pub csrf: &'a str,
    /// Whether to show "Log out" (a page with a token).
    pub can_log_out: bool,
}

/// Time left as the page's countdown writes it: `14:59 left`, `1:02:03 left`, `expired`.
fn time_left(millis: i64) -> String {
    if millis <= 0 {
        return "expired".to_owned();
    }
    let secs = millis / 1000;
    let (h, m, s) = (secs / 3600, secs % 3600 / 60, secs % 60);
    if h > 0 {
        format!("{h}:{m:02}:{s:02} left")
    } else {
        format!("{m}:{s:02} left")
    }
}

/// The entity ids a call affects, one chip each (hidden characters escaped).
fn targets(out: &mut String, targets: &[String]) {
    if targets.is_empty() {
        return;
    }
    out.push_str(
        "<div class=\"affects\"><span class=\"meta\">affects</span><ul class=\"targets\">",
    );
    for target in targets {
        let _ = write!(out, "<li>{}</li>", escape(&visible::escape(target)));
    }
    out.push_str("</ul></div>");
}

/// A pending request's card: the form works without JavaScript (it posts to
/// `/approvals/decide`); with JavaScript the buttons send the JSON request instead.
fn pending_card(out: &mut String, request: &PendingView, view: &PageView<'_>) {
    let raw_args = serde_json::to_string_pretty(&request.args).unwrap_or_default();
    let args = visible::escape_block(&raw_args);
    let rule = request
        .rule
        .as_deref()
        .map(|r| format!(" · {}", escape(r)))
        .unwrap_or_default();
    let left = request
        .expires_at_millis
        .saturating_sub(view.now.as_millis());
    let _ = write!(
        out,
        "<li class=\"card\" data-agent=\"{agent}\" data-request=\"{rid}\">{warning}\
         <div class=\"sig\">{sig}</div>",
        agent = escape(&request.agent_id),
        rid = escape(&request.request_id),
        warning = warning(request.hidden_characters),
        sig = escape(&visible::escape(&request.signature)),
    );
    targets(out, &request.targets);
    let _ = write!(
        out,
        "<div class=\"expiry\"><time class=\"countdown{soon}\" datetime=\"{expires}\" data-left-ms=\"{left}\">{text}</time> \
         <span class=\"meta\">· expires {expires}</span></div>\
         <div class=\"meta\">agent {agent} · request {shown_rid}{rule}</div>\
         <pre class=\"args\">{args}</pre>\
         <form method=\"post\" action=\"{BASE_PATH}/decide\" class=\"actions\">\
         <input type=\"hidden\" name=\"agent\" value=\"{agent}\">\
         <input type=\"hidden\" name=\"request_id\" value=\"{rid}\">\
         <input type=\"hidden\" name=\"csrf\" value=\"{csrf}\">\
         <button class=\"allow\" name=\"verdict\" value=\"allow\" data-verdict=\"allow\">Allow</button>\
         <button class=\"deny\" name=\"verdict\" value=\"deny\" data-verdict=\"deny\">Deny</button>",
        soon = if left < 60_000 { " soon" } else { "" },
        expires = escape(&request.expires_at),
        left = left.max(0),
        text = time_left(left),
        agent = escape(&request.agent_id),
        rid = escape(&request.request_id),
        shown_rid = escape(&visible::escape(&request.request_id)),
        args = escape(&args),
        csrf = escape(view.csrf),
    );
    for duration in view.grant_durations {
        let minutes = duration.as_secs().div_ceil(60).max(1);
        let _ = write!(
            out,
            "<button class=\"allow grant\" name=\"grant_minutes\" value=\"{minutes}\" data-verdict=\"allow\" data-grant=\"{minutes}\">Allow {}</button>",
            escape(&grant_label(*duration))
        );
    }
    out.push_str(
        "<button class=\"allow grant\" name=\"always\" value=\"1\" data-verdict=\"allow\" data-always=\"1\">Always allow</button>\
         <input class=\"reason\" type=\"text\" name=\"reason\" maxlength=\"500\" placeholder=\"Reason for a denial (optional)\" aria-label=\"Reason for a denial\">\
         </form></li>",
    );
}

/// The warning of a card whose request contains hidden characters (empty otherwise).
fn warning(hidden: bool) -> String {
    if hidden {
        format!(
            "<div class=\"warn\" role=\"alert\">⚠ {}</div>",
            escape(visible::WARNING)
        )
    } else {
        String::new()
    }
}

/// A grant (timed, or an "always allowed" rule) with its Revoke button, a form post without
/// JavaScript.
fn grant_item(out: &mut String, grant: &Grant, view: &PageView<'_>) {
    let hidden = visible::has_hidden(&grant.scope) || visible::has_hidden(&grant.agent_id);
    let _ = write!(
        out,
        "<li class=\"card\" data-grant=\"{id}\">{warning}<ul class=\"targets scope\">",
        id = grant.id,
        warning = warning(hidden),
    );
    for signature in grant.scope.lines() {
        let _ = write!(
            out,
            "<li class=\"sig\">{}</li>",
            escape(&visible::escape(signature))
        );
    }
    out.push_str("</ul><div class=\"meta\">");
    let _ = write!(
        out,
        "agent {} · granted by {} · {}",
        escape(&visible::escape(&grant.agent_id)),
        escape(&grant.created_by),
        escape(&rfc3339(grant.created_at)),
    );
    if let Some(expires) = grant.expires_at {
        let left = expires.as_millis().saturating_sub(view.now.as_millis());
        let _ = write!(
            out,
            " · <time class=\"countdown\" datetime=\"{at}\" data-left-ms=\"{left}\">{text}</time> (until {at})",
            at = escape(&rfc3339(expires)),
            left = left.max(0),
            text = time_left(left),
        );
    }
    let _ = write!(
        out,
        " · used {uses}×</div>\
         <form method=\"post\" action=\"{BASE_PATH}/grants/{id}/revoke\" class=\"actions\">\
         <input type=\"hidden\" name=\"csrf\" value=\"{csrf}\">\
         <button class=\"deny\" data-revoke=\"{id}\">Revoke</button></form></li>",
        uses = grant.uses,
        id = grant.id,
        csrf = escape(view.csrf),
    );
}

fn history_item(out: &mut String, item: &HistoryView) {
    let warning = warning(item.hidden_characters);
    let by = item
        .resolved_by
        .as_deref()
        .map(|b| format!(" · by {}", escape(&visible::escape(b))))
        .unwrap_or_default();
    let at = item
        .resolved_at
        .as_deref()
        .map(|a| format!(" · {}", escape(a)))
        .unwrap_or_default();
    let _ = write!(
        out,
        "<li class=\"card\" data-agent=\"{agent}\" data-request=\"{rid}\">{warning}\
         <div class=\"sig\"><span class=\"state state-{state}\">{state}</span> {sig}</div>\
         <div class=\"meta\">agent {shown_agent} · tool {tool} · request {shown_rid}{by}{at}</div>",
        agent = escape(&item.agent_id),
        shown_agent = escape(&visible::escape(&item.agent_id)),
        rid = escape(&item.request_id),
        shown_rid = escape(&visible::escape(&item.request_id)),
        tool = escape(&visible::escape(&item.tool)),
        state = escape(&item.state),
        sig = escape(&visible::escape(&item.signature)),
    );
    if let Some(error) = &item.error {
        let _ = write!(
            out,
            "<div class=\"meta\">{}</div>",
            escape(&visible::escape(error))
        );
    }
    out.push_str("</li>");
}

/// A list's items, or its "empty" line.
fn list<T>(
    out: &mut String,
    id: &str,
    items: &[T],
    empty: &str,
    mut item: impl FnMut(&mut String, &T),
) {
    let _ = write!(out, "<ul id=\"{id}\">");
    for each in items {
        item(out, each);
    }
    if items.is_empty() {
        let _ = write!(out, "<li class=\"empty\">{}</li>", escape(empty));
    }
    out.push_str("</ul>");
}

/// The history's search form (a GET of the page itself, so it works without JavaScript).
fn search_form(out: &mut String, search: &Search) {
    let value = |v: &Option<String>| escape(v.as_deref().unwrap_or_default());
    let _ = write!(
        out,
        "<form id=\"search\" class=\"search\" method=\"get\" action=\"{BASE_PATH}\" role=\"search\">\
         <label>agent<input name=\"agent\" value=\"{agent}\" autocomplete=\"off\"></label>\
         <label>tool<input name=\"tool\" value=\"{tool}\" autocomplete=\"off\"></label>\
         <label>decision<select name=\"decision\"><option value=\"\">any</option>",
        agent = value(&search.agent),
        tool = value(&search.tool),
    );
    for decision in HistoryDecision::ALL {
        let selected = if search.decision == Some(decision) {
            " selected"
        } else {
            ""
        };
        let _ = write!(
            out,
            "<option value=\"{name}\"{selected}>{name}</option>",
            name = decision.as_str()
        );
    }
    let _ = write!(
        out,
        "</select></label>\
         <label>decided by<input name=\"decider\" value=\"{decider}\" placeholder=\"web:, telegram:, timeout\" autocomplete=\"off\"></label>\
         <div class=\"go\"><button class=\"allow\" id=\"search-go\">Search</button>",
        decider = value(&search.decider),
    );
    if search.filtered() {
        let _ = write!(out, "<a class=\"plain\" href=\"{BASE_PATH}\">Clear</a>");
    }
    out.push_str("</div></form>");
}

/// The links to newer and older pages of the history.
fn pager(out: &mut String, search: &Search, more: bool) {
    out.push_str("<nav id=\"pager\" class=\"pager\" aria-label=\"history pages\">");
    if search.offset > 0 {
        let _ = write!(
            out,
            "<a href=\"{BASE_PATH}?{}\" rel=\"prev\">← Newer</a>",
            escape(&search.query_string(search.offset.saturating_sub(search.limit)))
        );
    } else {
        out.push_str("<span></span>");
    }
    if more {
        let _ = write!(
            out,
            "<a href=\"{BASE_PATH}?{}\" rel=\"next\">Older →</a>",
            escape(&search.query_string(search.offset.saturating_add(search.limit)))
        );
    }
    out.push_str("</nav>");
}

/// The approval page.
pub(super) fn approvals(view: &PageView<'_>, nonce: &str) -> String {
    let mut out = String::with_capacity(16384);
    head(&mut out, "agent-gate approvals", nonce, Some(view.csrf));
    out.push_str("<body><header><h1>agent-gate approvals</h1>");
    let _ = write!(
        out,
        "<span class=\"live\">deciding as {} · <span id=\"live\">connecting…</span></span>",
        escape(view.actor)
    );
    if view.can_log_out {
        let _ = write!(
            out,
            "<form method=\"post\" action=\"{BASE_PATH}/logout\">\
             <input type=\"hidden\" name=\"csrf\" value=\"{}\">\
             <button class=\"plain\">Log out</button></form>",
            escape(view.csrf)
        );
    }
    let _ = write!(
        out,
        "</header><main><div id=\"status\" role=\"status\" aria-live=\"polite\"></div>\
         <div class=\"cols\"><section>\
         <h2>Waiting for a decision (<span id=\"pending-count\">{}</span>)</h2>",
        view.pending.len()
    );
    list(
        &mut out,
        "pending",
        view.pending,
        "Nothing is waiting for a decision.",
        |out, request| pending_card(out, request, view),
    );
    let (timed, always): (Vec<Grant>, Vec<Grant>) = view
        .grants
        .iter()
        .cloned()
        .partition(|g| g.expires_at.is_some());
    let _ = write!(
        out,
        "<h2>Grants (<span id=\"grants-count\">{}</span>)</h2>\
         <p class=\"hint\">The same call by the same agent runs without asking until the grant ends.</p>",
        timed.len()
    );
    list(&mut out, "grants", &timed, "No grants.", |out, grant| {
        grant_item(out, grant, view)
    });
    let _ = write!(
        out,
        "<h2>Always allowed (<span id=\"always-count\">{}</span>)</h2>\
         <p class=\"hint\">Learned rules from \"Always allow\": they last until revoked; deny rules still win.</p>",
        always.len()
    );
    list(
        &mut out,
        "always",
        &always,
        "No calls are always allowed.",
        |out, grant| grant_item(out, grant, view),
    );
    out.push_str("</section><section><h2>Decided</h2>");
    search_form(&mut out, view.search);
    let limit = usize::try_from(view.search.limit).unwrap_or(usize::MAX);
    let more = view.history.len() > limit;
    let shown = &view.history[..view.history.len().min(limit)];
    let empty = if view.search.filtered() || view.search.offset > 0 {
        "No decisions match."
    } else {
        "No decisions yet."
    };
    list(&mut out, "history", shown, empty, |out, item| {
        history_item(out, item)
    });
    pager(&mut out, view.search, more);
    let _ = write!(
        out,
        "</section></div></main><script nonce=\"{}\">{}</script></body></html>",
        escape(nonce),
        SCRIPT.replace("BASE", BASE_PATH)
    );
    out
}

/// The login form (`message`: why the last attempt failed).
pub(super) fn login(nonce: &str, message: Option<&str>) -> String {
    let mut out = String::with_capacity(2048);
    head(&mut out, "agent-gate approvals: log in", nonce, None);
    out.push_str("<body><header><h1>agent-gate approvals</h1></header><main>");
    if let Some(message) = message {
        let _ = write!(
            out,
            "<p class=\"error\" role=\"alert\">{}</p>",
            escape(message)
        );
    }
    let _ = write!(
        out,
        "<form method=\"post\" action=\"{BASE_PATH}/login\" class=\"card\">\
         <label for=\"token\">Approver token</label>\
         <input type=\"password\" id=\"token\" name=\"token\" autocomplete=\"current-password\" required autofocus>\
         <button class=\"allow\" id=\"login\">Log in</button></form></main></body></html>"
    );
    out
}

/// The page the form fallback answers with.
pub(super) fn result(nonce: &str, message: &str) -> String {
    let mut out = String::with_capacity(1024);
    head(&mut out, "agent-gate approvals", nonce, None);
    let _ = write!(
        out,
        "<body><header><h1>agent-gate approvals</h1></header><main>\
         <p id=\"status\" role=\"status\">{}</p><p><a href=\"{BASE_PATH}\">Back to the approvals</a></p>\
         </main></body></html>",
        escape(message)
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn time_left_reads_like_the_script_writes_it() {
        assert_eq!(time_left(899_400), "14:59 left");
        assert_eq!(time_left(59_999), "0:59 left");
        assert_eq!(time_left(3_723_000), "1:02:03 left");
        assert_eq!(time_left(0), "expired");
        assert_eq!(time_left(-5), "expired");
    }

    #[test]
    fn escape_covers_markup_and_quotes() {
        assert_eq!(
            escape(r#"<script>alert("x")</script> & 'y'"#),
            "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt; &amp; &#39;y&#39;"
        );
        assert_eq!(escape("plain"), "plain");
    }

    #[test]
    fn attacker_values_never_reach_the_page_raw() {
        let evil = "\"><script>alert(1)</script><img src=x onerror=alert(2)>";
        let pending = PendingView {
            agent_id: evil.to_owned(),
            request_id: evil.to_owned(),
            tool: evil.to_owned(),
            signature: evil.to_owned(),
            targets: vec![evil.to_owned()],
            args: json!({ "entity_id": evil, evil: 1 }),
            rule: Some(evil.to_owned()),
            created_at: evil.to_owned(),
            expires_at: evil.to_owned(),
            expires_at_millis: 0,
            hidden_characters: false,
            shown: None,
        };
        let history = HistoryView {
            agent_id: evil.to_owned(),
            request_id: evil.to_owned(),
            tool: evil.to_owned(),
            signature: evil.to_owned(),
            args: json!(evil),
            state: evil.to_owned(),
            resolved_by: Some(evil.to_owned()),
            resolved_at: Some(evil.to_owned()),
            created_at: evil.to_owned(),
            error: Some(evil.to_owned()),
            hidden_characters: false,
            shown: None,
        };
        let grant = Grant {
            id: 7,
            agent_id: evil.to_owned(),
            scope: format!("{evil}\n{evil}"),
            tool: evil.to_owned(),
            request_id: evil.to_owned(),
            created_by: evil.to_owned(),
            created_at: Timestamp::from_millis(0),
            expires_at: None,
            uses: 0,
            revoked_by: None,
        };
        let search = Search {
            agent: Some(evil.to_owned()),
            tool: Some(evil.to_owned()),
            decision: None,
            decider: Some(evil.to_owned()),
            limit: 1,
            offset: 3,
        };
        let view = PageView {
            pending: &[pending],
            grants: &[grant],
            history: &[history.clone(), history],
            search: &search,
            grant_durations: &[Duration::from_secs(900)],
            now: Timestamp::from_millis(0),
            actor: evil,
            csrf: evil,
            can_log_out: true,
        };
        let html = approvals(&view, evil);
        assert!(!html.contains("<script>alert"));
        assert!(!html.contains("<img"));
        // Quotes cannot close an attribute.
        assert!(!html.contains("\"><script") && !html.contains("\"><img"));
        assert!(html.contains("data-agent=\"&quot;&gt;&lt;script&gt;"));
        assert!(html.contains("&lt;script&gt;alert(1)&lt;/script&gt;"));
        // Exactly the page's own script element.
        assert_eq!(html.matches("<script").count(), 1);
        let login = login(evil, Some(evil));
        assert!(!login.contains("<script") && !login.contains("<img"));
        let done = result(evil, evil);
        assert!(!done.contains("<script") && !done.contains("<img"));
    }
}
