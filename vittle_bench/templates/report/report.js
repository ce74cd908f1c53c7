// The report's only script: sortable tables and the gallery filters. It reads text with textContent and data
// attributes and never writes HTML, so nothing a run holds can become markup.
"use strict";

function sortable(table) {
  table.querySelectorAll("thead th").forEach((th, col) => th.addEventListener("click", () => {
    const body = table.tBodies[0], asc = th.dataset.order !== "asc";
    table.querySelectorAll("thead th").forEach(h => delete h.dataset.order);
    th.dataset.order = asc ? "asc" : "desc";
    const key = row => {
      const cell = row.cells[col];
      if (!cell) return "";
      if (cell.dataset.value === undefined) return cell.textContent;
      const n = Number(cell.dataset.value);
      return cell.dataset.value === "" || Number.isNaN(n) ? NaN : n;
    };
    const rows = Array.from(body.rows).sort((a, b) => {
      const x = key(a), y = key(b);
      if (typeof x === "number" || typeof y === "number") {
        if (Number.isNaN(x)) return 1;
        if (Number.isNaN(y)) return -1;
        return asc ? x - y : y - x;
      }
      return asc ? x.localeCompare(y) : y.localeCompare(x);
    });
    rows.forEach(r => body.appendChild(r));
  }));
}

function listOf(element, name) {
  const text = element.dataset[name];
  return text ? text.split("\n") : [];
}

function matches(element, filters) {
  for (const name of ["pair", "task", "shift", "severity", "category", "loser"]) {
    const wanted = filters[name];
    if (wanted && element.dataset[name] !== undefined && element.dataset[name] !== wanted) return false;
  }
  const model = filters.model, outcome = filters.outcome;
  if (element.dataset.model !== undefined) {
    if (model && element.dataset.model !== model) return false;
  } else if (element.dataset.worse !== undefined && (model || outcome)) {
    const outcomes = outcome ? [outcome] : ["worse", "better"];
    const models = outcomes.flatMap(o => listOf(element, o));
    if (model ? !models.includes(model) : models.length === 0) return false;
  }
  if (filters.search && element.classList.contains("card")) {
    if (!element.textContent.toLowerCase().includes(filters.search)) return false;
  }
  return true;
}

function applyFilters(form) {
  const filters = {};
  for (const field of form.elements) {
    if (field.name) filters[field.name] = field.name === "search" ? field.value.trim().toLowerCase() : field.value;
  }
  let shown = 0, total = 0;
  document.querySelectorAll(".filterable").forEach(element => {
    const visible = matches(element, filters);
    element.hidden = !visible;
    if (element.classList.contains("card")) {
      total += 1;
      const inside = element.closest("section.pair");
      if (visible && !(inside && inside.hidden)) shown += 1;
    }
  });
  const output = document.getElementById("shown");
  if (output) output.textContent = `${shown} of ${total} samples shown`;
}

document.querySelectorAll("table.sortable").forEach(sortable);
const form = document.getElementById("filters");
if (form) {
  form.addEventListener("input", () => applyFilters(form));
  form.addEventListener("change", () => applyFilters(form));
  form.addEventListener("submit", event => event.preventDefault());
  applyFilters(form);
}
