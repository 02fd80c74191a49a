//! The HTML of the approval page, its login form and the result page of the form fallback.
//! Every value is escaped with [`escape`]; request text an agent chose (signature, request
//! id, arguments, errors) is first passed through [`crate::messengers::visible`], so hidden
//! characters show as `\u{202e}` under a warning. The inline style and script carry the
//! response's CSP nonce and nothing is loaded from elsewhere.

use std::fmt::Write;

use super::{BASE_PATH, HistoryView, PendingView};
use crate::messengers::visible;

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
:root{color-scheme:light dark;--bg:#f6f7f9;--card:#fff;--fg:#1b1f24;--muted:#5b6470;--line:#d8dde3;--allow:#1a7f37;--deny:#c0362c}
@media (prefers-color-scheme:dark){:root{--bg:#111418;--card:#1b2027;--fg:#e6e9ed;--muted:#9aa4af;--line:#303843}}
*{box-sizing:border-box}
body{margin:0;font:16px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;background:var(--bg);color:var(--fg)}
header{display:flex;flex-wrap:wrap;gap:.5rem;align-items:center;justify-content:space-between;padding:.75rem 1rem;border-bottom:1px solid var(--line);background:var(--card)}
h1{font-size:1.2rem;margin:0}
h2{font-size:1.05rem;margin:1.25rem 0 .5rem}
main{max-width:52rem;margin:0 auto;padding:0 1rem 2rem}
ul{list-style:none;margin:0;padding:0}
.card{background:var(--card);border:1px solid var(--line);border-radius:.6rem;padding:.75rem;margin:.6rem 0}
.sig{font-weight:600;overflow-wrap:anywhere}
.meta{color:var(--muted);font-size:.85rem;overflow-wrap:anywhere}
.affects{font-size:.9rem;overflow-wrap:anywhere}
pre{white-space:pre-wrap;overflow-wrap:anywhere;font-size:.85rem;background:var(--bg);border-radius:.4rem;padding:.5rem;margin:.5rem 0;max-height:16rem;overflow:auto}
.actions{display:flex;gap:.5rem}
button{font:inherit;border:0;border-radius:.45rem;padding:.6rem 1rem;min-width:6rem;cursor:pointer;color:#fff}
button.allow{background:var(--allow)}button.deny{background:var(--deny)}
input.reason{flex:1 1 12rem;min-width:0;font:inherit;padding:.45rem .6rem;border:1px solid var(--line);border-radius:.4rem;background:var(--card);color:var(--fg)}
button.plain{background:transparent;color:var(--muted);border:1px solid var(--line);min-width:0;padding:.35rem .7rem}
.actions button{flex:1}
.state{font-weight:600}
.state-executed,.state-approved,.state-executing{color:var(--allow)}
.state-denied,.state-failed,.state-expired{color:var(--deny)}
#status{min-height:1.4rem;font-weight:600}
.live{font-size:.8rem;color:var(--muted)}
.empty{color:var(--muted)}
input[type=password]{font:inherit;width:100%;padding:.6rem;border:1px solid var(--line);border-radius:.45rem;margin:.5rem 0;background:var(--card);color:var(--fg)}
.error{color:var(--deny);font-weight:600}
.warn{color:var(--deny);font-weight:600;border:2px solid var(--deny);border-radius:.4rem;padding:.4rem .6rem;margin:.4rem 0}
"#;

const SCRIPT: &str = r#"
(function(){
  "use strict";
  var csrf = document.querySelector('meta[name="csrf-token"]').content;
  var statusBox = document.getElementById("status");
  var live = document.getElementById("live");
  function el(tag, cls, text){var e=document.createElement(tag);if(cls)e.className=cls;if(text!==undefined&&text!==null)e.textContent=String(text);return e;}
  function when(iso){var d=new Date(iso);return isNaN(d)?iso:d.toLocaleString();}
  function pendingCard(r){
    var li=el("li","card");li.dataset.agent=r.agent_id;li.dataset.request=r.request_id;
    var s=r.shown;
    if(s)li.appendChild(el("div","warn",s.warning));
    li.appendChild(el("div","sig",s?s.signature:r.signature));
    if(r.targets&&r.targets.length)li.appendChild(el("div","affects","affects "+r.targets.join(", ")));
    li.appendChild(el("div","meta","agent "+r.agent_id+" \u00b7 request "+(s?s.request_id:r.request_id)+(r.rule?" \u00b7 "+r.rule:"")));
    li.appendChild(el("div","meta","expires "+when(r.expires_at)));
    li.appendChild(el("pre","args",s?s.args:JSON.stringify(r.args,null,2)));
    var actions=el("div","actions");
    var allow=el("button","allow","Allow");allow.type="button";allow.dataset.verdict="allow";
    var deny=el("button","deny","Deny");deny.type="button";deny.dataset.verdict="deny";
    [[15,"15 min"],[60,"1 h"],[480,"8 h"]].forEach(function(g){var b=el("button","allow grant","Allow "+g[1]);b.type="button";b.dataset.verdict="allow";b.dataset.grant=String(g[0]);actions.appendChild(b);});
    var always=el("button","allow grant","Always allow");always.type="button";always.dataset.verdict="allow";always.dataset.always="1";actions.appendChild(always);
    var reason=el("input","reason");reason.type="text";reason.name="reason";reason.maxLength=500;reason.placeholder="Reason for a denial (optional)";reason.setAttribute("aria-label","Reason for a denial");
    actions.appendChild(allow);actions.appendChild(deny);actions.appendChild(reason);li.appendChild(actions);
    return li;
  }
  function historyItem(r){
    var li=el("li","card");li.dataset.agent=r.agent_id;li.dataset.request=r.request_id;
    var s=r.shown;
    if(s)li.appendChild(el("div","warn",s.warning));
    var head=el("div","sig");head.appendChild(el("span","state state-"+r.state,r.state));head.appendChild(document.createTextNode(" "+(s?s.signature:r.signature)));li.appendChild(head);
    li.appendChild(el("div","meta","agent "+r.agent_id+" \u00b7 request "+(s?s.request_id:r.request_id)+(r.resolved_by?" \u00b7 by "+r.resolved_by:"")+(r.resolved_at?" \u00b7 "+when(r.resolved_at):"")));
    if(r.error)li.appendChild(el("div","meta",s&&s.error?s.error:r.error));
    return li;
  }
  function grantItem(g){
    var li=el("li","card");
    li.appendChild(el("div","sig",g.scope));
    li.appendChild(el("div","meta","agent "+g.agent_id+" \u00b7 granted by "+g.created_by+" \u00b7 "+(g.expires_at?"until "+when(g.expires_at):"always (until revoked)")+" \u00b7 used "+g.uses+"\u00d7"));
    var actions=el("div","actions");var revoke=el("button","deny","Revoke");revoke.type="button";revoke.dataset.revoke=String(g.id);actions.appendChild(revoke);li.appendChild(actions);
    return li;
  }
  function fill(list, items, make, emptyText){
    list.replaceChildren();
    items.forEach(function(r){list.appendChild(make(r));});
    if(!items.length)list.appendChild(el("li","empty",emptyText));
  }
  function getJson(path){return fetch(path,{credentials:"same-origin",headers:{"Accept":"application/json"}}).then(function(r){if(!r.ok)throw new Error(r.status);return r.json();});}
  var loading=false, again=false;
  function refresh(){
    if(loading){again=true;return;}
    loading=true;
    Promise.all([getJson("BASE/api/pending"),getJson("BASE/api/history"),getJson("BASE/api/grants")]).then(function(res){
      fill(document.getElementById("grants"),res[2],grantItem,"No grants.");
      fill(document.getElementById("pending"),res[0],pendingCard,"Nothing is waiting for a decision.");
      document.getElementById("pending-count").textContent=String(res[0].length);
      fill(document.getElementById("history"),res[1],historyItem,"No decisions yet.");
    }).catch(function(e){statusBox.textContent="Could not refresh ("+e.message+"); reload the page.";})
    .then(function(){loading=false;if(again){again=false;refresh();}});
  }
  function decide(agent, request, verdict, buttons, reason, grant){
    buttons.forEach(function(b){b.disabled=true;});
    var body=(verdict==="deny"&&reason)?JSON.stringify({reason:reason}):(grant===-1?JSON.stringify({always:true}):(grant?JSON.stringify({grant_minutes:grant}):""));
    fetch("BASE/api/"+encodeURIComponent(agent)+"/"+encodeURIComponent(request)+"/"+verdict,
      {method:"POST",credentials:"same-origin",headers:{"X-CSRF-Token":csrf,"Accept":"application/json","Content-Type":"application/json"},body:body})
      .then(function(r){return r.json();})
      .then(function(body){statusBox.textContent=body.message||body.error||"";})
      .catch(function(e){statusBox.textContent="The decision was not sent ("+e.message+").";})
      .then(refresh);
  }
  document.getElementById("pending").addEventListener("click",function(ev){
    var b=ev.target.closest("button[data-verdict]");if(!b)return;
    ev.preventDefault();
    var card=b.closest("li.card");
    var reason=card.querySelector("input.reason");
    decide(card.dataset.agent,card.dataset.request,b.dataset.verdict,Array.prototype.slice.call(card.querySelectorAll("button")),reason?reason.value.trim():"",b.dataset.always?-1:(b.dataset.grant?Number(b.dataset.grant):0));
  });
  document.getElementById("grants").addEventListener("click",function(ev){
    var b=ev.target.closest("button[data-revoke]");if(!b)return;
    ev.preventDefault();b.disabled=true;
    fetch("BASE/api/grants/"+encodeURIComponent(b.dataset.revoke)+"/revoke",{method:"POST",credentials:"same-origin",headers:{"X-CSRF-Token":csrf,"Accept":"application/json"}})
      .then(function(r){return r.json();})
      .then(function(body){statusBox.textContent=body.message||"";})
      .catch(function(e){statusBox.textContent="The revocation was not sent ("+e.message+").";})
      .then(refresh);
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
"#;

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

/// A pending request's card: the form works without JavaScript (it posts to
/// `/approvals/decide`); with JavaScript the buttons send the JSON request instead.
fn pending_card(out: &mut String, request: &PendingView, csrf: &str) {
    let raw_args = serde_json::to_string_pretty(&request.args).unwrap_or_default();
    let args = visible::escape_block(&raw_args);
    let warning = warning(request.hidden_characters);
    let rule = request
        .rule
        .as_deref()
        .map(|r| format!(" · {}", escape(r)))
        .unwrap_or_default();
    let _ = write!(
        out,
        "<li class=\"card\" data-agent=\"{agent}\" data-request=\"{rid}\">{warning}\
         <div class=\"sig\">{sig}</div>{affects}\
         <div class=\"meta\">agent {agent} · request {shown_rid}{rule}</div>\
         <div class=\"meta\">expires {expires}</div>\
         <pre class=\"args\">{args}</pre>\
         <form method=\"post\" action=\"{BASE_PATH}/decide\" class=\"actions\">\
         <input type=\"hidden\" name=\"agent\" value=\"{agent}\">\
         <input type=\"hidden\" name=\"request_id\" value=\"{rid}\">\
         <input type=\"hidden\" name=\"csrf\" value=\"{csrf}\">\
         <button class=\"allow\" name=\"verdict\" value=\"allow\" data-verdict=\"allow\">Allow</button>\
         <button class=\"deny\" name=\"verdict\" value=\"deny\" data-verdict=\"deny\">Deny</button>\
         <button class=\"allow grant\" name=\"grant_minutes\" value=\"15\" data-verdict=\"allow\" data-grant=\"15\">Allow 15 min</button>\
         <button class=\"allow grant\" name=\"grant_minutes\" value=\"60\" data-verdict=\"allow\" data-grant=\"60\">Allow 1 h</button>\
         <button class=\"allow grant\" name=\"grant_minutes\" value=\"480\" data-verdict=\"allow\" data-grant=\"480\">Allow 8 h</button>\
         <button class=\"allow grant\" name=\"always\" value=\"1\" data-verdict=\"allow\" data-always=\"1\">Always allow</button>\
         <input class=\"reason\" type=\"text\" name=\"reason\" maxlength=\"500\" placeholder=\"Reason for a denial (optional)\" aria-label=\"Reason for a denial\">\
         </form></li>",
        agent = escape(&request.agent_id),
        rid = escape(&request.request_id),
        shown_rid = escape(&visible::escape(&request.request_id)),
        sig = escape(&visible::escape(&request.signature)),
        affects = if request.targets.is_empty() {
            String::new()
        } else {
            format!(
                "<div class=\"affects\">affects {}</div>",
                escape(&visible::escape(&request.targets.join(", ")))
            )
        },
        expires = escape(&request.expires_at),
        args = escape(&args),
        csrf = escape(csrf),
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

fn history_item(out: &mut String, item: &HistoryView) {
    let warning = warning(item.hidden_characters);
    let by = item
        .resolved_by
        .as_deref()
        .map(|b| format!(" · by {}", escape(b)))
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
         <div class=\"meta\">agent {agent} · request {shown_rid}{by}{at}</div>",
        agent = escape(&item.agent_id),
        rid = escape(&item.request_id),
        shown_rid = escape(&visible::escape(&item.request_id)),
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

/// The approval page.
pub(super) fn approvals(
    pending: &[PendingView],
    history: &[HistoryView],
    actor: &str,
    csrf: &str,
    nonce: &str,
    can_log_out: bool,
) -> String {
    let mut out = String::with_capacity(8192);
    head(&mut out, "agent-gate approvals", nonce, Some(csrf));
    out.push_str("<body><header><h1>agent-gate approvals</h1>");
    let _ = write!(
        out,
        "<span class=\"live\">deciding as {} · <span id=\"live\">connecting…</span></span>",
        escape(actor)
    );
    if can_log_out {
        let _ = write!(
            out,
            "<form method=\"post\" action=\"{BASE_PATH}/logout\">\
             <input type=\"hidden\" name=\"csrf\" value=\"{}\">\
             <button class=\"plain\">Log out</button></form>",
            escape(csrf)
        );
    }
    let _ = write!(
        out,
        "</header><main><div id=\"status\" role=\"status\" aria-live=\"polite\"></div>\
         <h2>Waiting for a decision (<span id=\"pending-count\">{}</span>)</h2><ul id=\"pending\">",
        pending.len()
    );
    for request in pending {
        pending_card(&mut out, request, csrf);
    }
    if pending.is_empty() {
        out.push_str("<li class=\"empty\">Nothing is waiting for a decision.</li>");
    }
    out.push_str(
        "</ul><h2>Grants</h2><ul id=\"grants\"><li class=\"empty\">Grants are listed here (with JavaScript on).</li></ul>",
    );
    out.push_str("<h2>Decided</h2><ul id=\"history\">");
    for item in history {
        history_item(&mut out, item);
    }
    if history.is_empty() {
        out.push_str("<li class=\"empty\">No decisions yet.</li>");
    }
    let _ = write!(
        out,
        "</ul></main><script nonce=\"{}\">{}</script></body></html>",
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
        let html = approvals(&[pending], &[history], evil, evil, evil, true);
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
