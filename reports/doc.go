// Package reports turns one or more results databases into the papers' tables (terminal,
// Markdown, LaTeX, HTML) and quality-versus-speedup figures (PNG, SVG), assembled into
// report.md and report.html.
//
// It reads SQLite only and never recomputes a metric or reruns a configuration, so a report can be
// rebuilt from copied or merged databases. A number that the databases do not hold (a FLOPs
// count, a baseline for a speedup) is left blank and the report says why; it is never estimated.
//
// A report is a list of sections built by independent builders (tables, trade-off figures), so
// later analyses — the step_stats diagnostics (step × block heatmaps, error accumulation,
// token-refresh maps) — plug in as one more builder over Data without touching the others.
package reports
