// Small enhancements only: every form works without this file.
"use strict";
document.addEventListener("DOMContentLoaded", function () {
  // Copy buttons: <button data-copy="#id"> copies the text of the element #id.
  document.querySelectorAll("[data-copy]").forEach(function (button) {
    button.hidden = false;
    button.addEventListener("click", function () {
      var source = document.querySelector(button.getAttribute("data-copy"));
      if (!source || !navigator.clipboard) { return; }
      navigator.clipboard.writeText(source.textContent.trim()).then(function () {
        button.textContent = "Copied";
      });
    });
  });
  // Toggles: <button data-toggle="#id"> shows #id and hides its own row's other parts (inline edit, confirm).
  document.querySelectorAll("[data-toggle]").forEach(function (button) {
    button.hidden = false;
    button.addEventListener("click", function (event) {
      event.preventDefault();
      var target = document.querySelector(button.getAttribute("data-toggle"));
      var hide = button.getAttribute("data-hide") ? document.querySelector(button.getAttribute("data-hide")) : null;
      if (!target) { return; }
      target.hidden = !target.hidden;
      if (hide) { hide.hidden = !target.hidden ? false : true; }
      var focus = target.hidden ? (hide && hide.querySelector("button, a")) : target.querySelector("input, button");
      if (focus) { focus.focus(); }
    });
  });
  document.querySelectorAll("[data-js-only]").forEach(function (el) { el.hidden = false; });
  document.querySelectorAll("[data-no-js]").forEach(function (el) { el.hidden = true; });
});
