//! How a command prints: `-o table|wide|json` ([`OutputArgs`]), the one table style
//! ([`Table`], aligned by display width), JSON documents, and whether colour may be used.

use std::io::IsTerminal as _;

use clap::{Args, ValueEnum};
use comfy_table::{presets, CellAlignment, ContentArrangement};

/// What a printing command prints.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, ValueEnum)]
pub enum Format {
    /// Readable tables (the default).
    #[default]
    Table,
    /// Tables with more columns.
    Wide,
    /// One JSON document.
    Json,
}

/// `-o/--output` and its shorthand `--json`, flattened into every command that prints.
#[derive(Debug, Clone, Default, Args)]
pub struct OutputArgs {
    /// How to print: table, wide (more columns) or json (one document).
    #[arg(
        short = 'o',
        long = "output",
        env = "ACSCTL_OUTPUT",
        value_enum,
        default_value_t = Format::Table,
        global = true
    )]
    pub output: Format,
    /// Short for `-o json`.
    #[arg(long, env = "ACSCTL_JSON", global = true)]
    pub json: bool,
}

impl OutputArgs {
    pub fn format(&self) -> Format {
        if self.json {
            Format::Json
        } else {
            self.output
        }
    }
}

/// Prints `value` as one pretty JSON document.
pub fn print_json(value: &impl serde::Serialize) {
    match serde_json::to_string_pretty(value) {
        Ok(s) => println!("{s}"),
        // Our own reply types always serialize; say so rather than print nothing.
        Err(e) => eprintln!("error: cannot print JSON: {e}"),
    }
}

/// Colour only on a terminal, and never when `NO_COLOR` is set to anything non-empty
/// (<https://no-color.org>).
pub fn colour() -> bool {
    colour_for(
        std::env::var_os("NO_COLOR"),
        std::io::stdout().is_terminal(),
    )
}

fn colour_for(no_color: Option<std::ffi::OsString>, terminal: bool) -> bool {
    terminal && no_color.is_none_or(|v| v.is_empty())
}

/// A borderless, left-aligned table: two spaces between columns, the last column unpadded,
/// columns as wide as their widest cell's display width (so `µ`, `→` and CJK line up).
pub struct Table {
    inner: comfy_table::Table,
}

impl Table {
    pub fn new<'a>(header: impl IntoIterator<Item = &'a str>) -> Self {
        let mut inner = comfy_table::Table::new();
        inner
            .load_preset(presets::NOTHING)
            .set_content_arrangement(ContentArrangement::Disabled)
            .set_header(header);
        Self { inner }
    }

    pub fn row(&mut self, cells: impl IntoIterator<Item = String>) {
        self.inner.add_row(cells);
    }

    pub fn render(&mut self) -> String {
        let n = self.inner.column_count();
        for (i, c) in self.inner.column_iter_mut().enumerate() {
            c.set_padding((0, if i + 1 == n { 0 } else { 2 }));
            c.set_cell_alignment(CellAlignment::Left);
        }
        let mut out = String::new();
        for line in self.inner.lines() {
            out.push_str(line.trim_end());
            out.push('\n');
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns_align_by_display_width() {
        let mut t = Table::new(["NAME", "NOTE"]);
        t.row(["日本".to_string(), "wide".to_string()]);
        t.row(["ab".to_string(), "x".to_string()]);
        assert_eq!(t.render(), "NAME  NOTE\n日本  wide\nab    x\n");
    }

    #[test]
    fn no_color_turns_colour_off() {
        assert!(colour_for(None, true));
        assert!(
            colour_for(Some("".into()), true),
            "an empty NO_COLOR does not count"
        );
        assert!(!colour_for(Some("1".into()), true));
        assert!(!colour_for(None, false), "no colour into a pipe");
    }

    #[test]
    fn json_flag_is_short_for_output_json() {
        let o = OutputArgs {
            output: Format::Wide,
            json: true,
        };
        assert_eq!(o.format(), Format::Json);
        assert_eq!(OutputArgs::default().format(), Format::Table);
    }
}
