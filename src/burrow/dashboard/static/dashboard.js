// Progressive enhancement only: every form works without this file.
"use strict";

// Copy buttons: copy the text of the element named by data-copy.
document.querySelectorAll("button[data-copy]").forEach((button) => {
  button.addEventListener("click", async () => {
    const source = document.getElementById(button.dataset.copy);
    const text = source.value !== undefined ? source.value : source.textContent;
    try {
      await navigator.clipboard.writeText(text);
      button.textContent = "Copied";
    } catch {
      if (source.select) source.select();
      button.textContent = "Press Ctrl+C";
    }
    setTimeout(() => { button.textContent = "Copy"; }, 2000);
  });
});

// Destructive forms ask first.
document.querySelectorAll("form[data-confirm]").forEach((form) => {
  form.addEventListener("submit", (event) => {
    if (!window.confirm(form.dataset.confirm)) event.preventDefault();
  });
});

// The ACL editor: validated by the server's own grammar as you type.
const aclField = document.querySelector("textarea[data-check-url]");
if (aclField) {
  const status = document.getElementById("acl-status");
  let timer = null;
  let latest = 0;
  const check = async () => {
    const asked = ++latest;
    const url = aclField.dataset.checkUrl + "?rules=" + encodeURIComponent(aclField.value);
    const response = await fetch(url, { credentials: "same-origin" });
    if (asked !== latest || !response.ok) return;
    const result = await response.json();
    aclField.setAttribute("aria-invalid", result.valid ? "false" : "true");
    status.className = "acl-status " + (result.valid ? "valid" : "invalid");
    status.textContent = result.valid ? (aclField.value.trim() ? "Valid rules." : "No rules: allows everything.") : result.message;
  };
  aclField.addEventListener("input", () => { clearTimeout(timer); timer = setTimeout(check, 250); });
}
