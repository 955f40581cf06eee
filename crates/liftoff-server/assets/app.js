// Liftoff web UI: the only script of our own (CSP allows no inline script).
// "Select all" for a queue page's bulk stop.
document.addEventListener("change", (e) => {
  const all = e.target.closest("[data-select-all]");
  if (!all) return;
  for (const box of document.querySelectorAll(`#${all.dataset.selectAll} input[name=item]`)) box.checked = all.checked;
});
