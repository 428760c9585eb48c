// agentwatch's live page: polls /api/state and draws it with DOM calls
// only (every text from the log is set as text, never as markup). The
// token comes from the URL's fragment and goes out as a bearer header.
"use strict";

const token = new URLSearchParams(location.hash.slice(1)).get("token") || "";
const POLL_MS = 1500;

function el(tag, attrs, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k === "class") e.className = v;
    else e.setAttribute(k, v);
  }
  for (const c of children) {
    e.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return e;
}

function say(text, error) {
  const m = document.getElementById("message");
  m.textContent = text;
  m.className = error ? "error" : "";
  m.hidden = false;
}

async function api(path, body) {
  const init = { headers: { Authorization: "Bearer " + token } };
  if (body !== undefined) {
    init.method = "POST";
    init.headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  const r = await fetch(path, init);
  const text = await r.text();
  let v;
  try { v = JSON.parse(text); } catch (_) { v = { ok: false, error: text.trim() }; }
  if (!r.ok && v.ok === undefined) v.ok = false;
  return v;
}

function shownTime(t) {
  return t && t.endsWith("Z") ? t.slice(0, 19).replace("T", " ") + " UTC" : (t || "");
}

function drawAgents(agents) {
  const body = document.querySelector("#agents tbody");
  body.replaceChildren();
  for (const a of agents) {
    const state = a.paused ? el("span", { class: "paused-state" }, "paused") : "running";
    body.append(el("tr", { class: "agent", "data-agent": a.agent },
      el("td", {}, a.agent), el("td", {}, a.mode), el("td", {}, state),
      el("td", {}, a.processes), el("td", {}, a.pending)));
  }
}

async function decide(id, approve, learn) {
  const v = await api(approve ? "/api/approve" : "/api/deny", learn ? { id, learn: true } : { id });
  say(v.ok ? v.message || "done" : "not done: " + v.error, !v.ok);
  refresh();
}

function drawPending(pending) {
  const box = document.getElementById("pending");
  box.replaceChildren();
  document.getElementById("pending-none").hidden = pending.length > 0;
  const now = Date.now() / 1000;
  for (const p of pending) {
    const left = Math.max(0, Math.round(p.deadline - now));
    const approve = el("button", { class: "approve", type: "button" }, "Approve");
    const learn = el("button", { class: "approve learn", type: "button",
      title: "Approve, and add the grant to the agent's profile so it is not asked again" }, "Approve and learn");
    const deny = el("button", { class: "deny", type: "button" }, "Deny");
    approve.addEventListener("click", () => decide(p.id, true, false));
    learn.addEventListener("click", () => decide(p.id, true, true));
    deny.addEventListener("click", () => decide(p.id, false));
    box.append(el("div", { class: "request", "data-id": p.id },
      el("p", { class: "words" }, p.agent + " " + p.words),
      el("p", { class: "meta" }, `request ${p.id} · rule ${p.rule} · process ${p.comm} (pid ${p.pid}) · stopped until someone answers, at most ${left} s more`),
      el("p", { class: "meta" }, p.reason || ""),
      el("p", { class: "context" }, p.why ? "Why: " + p.why : ""),
      approve, learn, deny));
  }
}

// A day's count as a bar of the trend, relative to the busiest day.
const BARS = "▁▂▃▄▅▆▇█";
function trend(days) {
  const max = Math.max(1, ...days.map(d => d.violations));
  return days.map(d => d.violations ? BARS[Math.min(7, Math.ceil(d.violations / max * 7))] : "·").join("");
}

function drawTimelines(tl, drift) {
  const box = document.getElementById("timelines");
  box.replaceChildren();
  if (tl.error) box.append(el("p", { class: "summary" }, "The audit log could not be read: " + tl.error));
  if (!tl.source) box.append(el("p", { class: "summary" }, "No audit log is configured: the timeline needs one."));
  for (const a of tl.agents || []) {
    const section = el("section", { class: "timeline", "data-agent": a.agent });
    section.append(el("h2", {}, "Agent " + a.agent),
      el("p", { class: "summary" }, `${a.sessions} session(s); ${a.violations} violation(s): ${a.blocked} blocked, ${a.paused} paused (${a.approved} approved); ${a.learned} new name(s) learned in place. The latest entries of ${tl.source}.`));
    const days = (drift || {})[a.agent];
    if (days && days.length) {
      const counts = days.map(d => `${d.day}: ${d.violations} violation(s), ${d.learned} learned`).join("\n");
      section.append(el("p", { class: "drift", title: counts },
        `Drift, violations a day from ${days[0].day} to ${days[days.length - 1].day}: `,
        el("span", { class: "trend" }, trend(days)),
        ` (${days.reduce((n, d) => n + d.violations, 0)} in all)`));
    }
    const table = el("table", {});
    for (const e of a.entries.slice().reverse()) {
      const what = el("td", { class: "what" }, e.text);
      if (e.why) what.append(el("div", { class: "why" }, "Why: " + e.why));
      table.append(el("tr", { class: e.tone },
        el("td", { class: "time" }, shownTime(e.time)),
        what,
        el("td", { class: "rule" }, e.rule || "")));
    }
    section.append(table);
    box.append(section);
  }
}

async function refresh() {
  if (!token) {
    say("This page needs its token: open the address `agentwatch ui` prints.", true);
    return;
  }
  try {
    const s = await api("/api/state");
    if (s.ok === false) { say(s.error, true); return; }
    drawAgents(s.agents || []);
    drawPending(s.pending || []);
    drawTimelines(s.timeline || {}, s.drift);
    document.getElementById("updated").textContent = "Updated " + new Date().toLocaleTimeString();
  } catch (e) {
    document.getElementById("updated").textContent = "agentwatch is not answering (" + e + ")";
  }
}

refresh();
setInterval(refresh, POLL_MS);
