// Small enhancements only: every form works without this file.
"use strict";
document.addEventListener("DOMContentLoaded", function () {
  var find = function (selector) { return selector ? document.querySelector(selector) : null; };
  // The sign-in page's hand-over to the org's SSO: follow the link at once (without JS, a click does).
  var follow = document.querySelector("a[data-auto-follow]");
  if (follow) { window.location.assign(follow.href); return; }

  document.querySelectorAll("[data-js-only]").forEach(function (el) { el.hidden = false; });

  // Copy buttons: <button data-copy="#id" hidden> copies the text of #id (shown only when it can work).
  // Done, the button says "Copied" (its aria-label too, which would outlive the text) and a polite
  // live region, there before any copy so that screen readers follow it, says it once more.
  var copies = document.querySelectorAll("[data-copy]");
  var copied = null;
  if (copies.length && navigator.clipboard) {
    copied = document.createElement("p");
    copied.className = "sr-only";
    copied.setAttribute("aria-live", "polite");
    document.body.appendChild(copied);
  }
  copies.forEach(function (button) {
    if (!copied) { return; }
    button.hidden = false;
    var label = button.getAttribute("aria-label");
    button.addEventListener("click", function () {
      var source = find(button.getAttribute("data-copy"));
      if (!source) { return; }
      navigator.clipboard.writeText((source.value || source.textContent).trim()).then(function () {
        button.textContent = "Copied";
        if (label) { button.setAttribute("aria-label", label.replace(/^Copy\b/, "Copied")); }
        copied.textContent = "";  // the same words again are news too
        window.setTimeout(function () { copied.textContent = "Copied"; }, 50);
      });
    });
  });

  // Inline forms (rename, delete confirmation): a link with data-toggle="#form" opens or closes the
  // form in place instead of loading the page that shows it; data-hide names what opening hides,
  // data-show what closing shows again. Closing puts the form's fields back as they were.
  document.querySelectorAll("[data-toggle]").forEach(function (control) {
    control.addEventListener("click", function (event) {
      var target = find(control.getAttribute("data-toggle"));
      if (!target) { return; }
      event.preventDefault();
      var opening = target.hidden;
      target.hidden = !opening;
      var hide = find(control.getAttribute("data-hide"));
      var show = find(control.getAttribute("data-show"));
      if (hide) { hide.hidden = opening; }
      if (show) { show.hidden = false; }
      if (opening) {
        target.opener = control;  // where the focus goes back to when the form closes
        var first = target.querySelector("input:not([type=hidden]), button");
        if (first) { first.focus(); if (first.select) { first.select(); } }
      } else {
        if (target.reset) { target.reset(); }
        // A form the page came with open (?rename=, ?delete=: no script yet when its link was
        // followed) has no opener: its opening link stands for it, as if the script had opened it.
        var opener = target.opener || document.querySelector(
          "[data-toggle='#" + target.id + "'][data-hide]");
        var back = (opener && !opener.closest("[hidden]")) ? opener : show && show.querySelector("a, button");
        if (back) { back.focus(); }
      }
    });
  });

  // Escape in an open inline form cancels it, as its Cancel link does.
  document.addEventListener("keydown", function (event) {
    if (event.key !== "Escape" || !event.target.closest) { return; }
    var form = event.target.closest("form");
    var cancel = form && form.querySelector("a[data-toggle][data-show]");
    if (cancel) { event.preventDefault(); cancel.click(); }
  });

  // The invite dialog's seat panel follows the seats as they stand (another admin may invite meanwhile).
  var seats = document.querySelector("[data-seats-url]");
  if (seats && window.fetch) {
    var refresh = function () {
      fetch(seats.getAttribute("data-seats-url"), {credentials: "same-origin"})
        .then(function (answer) { return answer.ok ? answer.json() : null; })
        .then(function (found) {
          if (!found) { return; }
          Object.keys(found).forEach(function (name) {
            var slot = seats.querySelector("[data-seat='" + name + "']");
            if (slot) { slot.textContent = found[name]; }
          });
        });
    };
    document.querySelectorAll("[data-seats-refresh]").forEach(function (input) {
      input.addEventListener("change", refresh);
      input.addEventListener("focus", refresh);
    });
    // A field focused before this script ran had no listener then: ask now, as its focus would have.
    if (document.activeElement && document.activeElement.hasAttribute("data-seats-refresh")) { refresh(); }
  }

  // A form that came back refused: the focus goes to its first field at fault (aria-invalid, whose
  // error its aria-describedby names), else to the form's own error; the errors carry role="alert".
  // One rule for every form (console/forms.html gives the attributes); a hidden form is left alone.
  var visible = function (el) { return !el.closest("[hidden]"); };
  var atFault = Array.prototype.filter.call(
    document.querySelectorAll("[aria-invalid='true'], .form-error[tabindex='-1']"), visible);
  var invalid = atFault.filter(function (el) { return el.getAttribute("aria-invalid") === "true"; })[0] || atFault[0];
  if (invalid) { invalid.focus(); }

  // Every handler above is attached: what a click does from now on no longer depends on the timing.
  document.documentElement.dataset.console = "ready";
});
