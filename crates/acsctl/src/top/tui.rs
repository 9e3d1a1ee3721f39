//! `acsctl top` on a terminal: a full-screen view (ratatui on crossterm) of the same
//! [`Frame`] the plain output prints. `q`, Esc or Ctrl-C quits; a resize redraws at once.
//! Health and state cells are coloured unless `NO_COLOR` is set.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use ratatui::crossterm::event::{self, Event, KeyCode, KeyEventKind, KeyModifiers};
use ratatui::layout::{Constraint, Layout};
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::Line;
use ratatui::widgets::{Block, Cell, Paragraph, Row, Table};
use ratatui::DefaultTerminal;
use tokio::sync::mpsc;

use super::frame::{Frame, HOSTS, SERVICES};
use crate::error::{Error, Result};

/// What the keyboard asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Key {
    Quit,
    Redraw,
}

pub struct Tui {
    term: DefaultTerminal,
    keys: mpsc::Receiver<Key>,
    stop: Arc<AtomicBool>,
    colour: bool,
    interval: Duration,
}

impl Tui {
    /// Enters the alternate screen in raw mode; [`Drop`] restores the terminal.
    pub fn start(interval: Duration) -> Result<Self> {
        let term = ratatui::try_init()
            .map_err(|e| Error::Failed(format!("cannot set up the terminal: {e}")))?;
        let (tx, keys) = mpsc::channel(8);
        let stop = Arc::new(AtomicBool::new(false));
        let stopped = stop.clone();
        // crossterm's reads block: a thread of their own, checking `stop` every 100 ms.
        std::thread::spawn(move || {
            while !stopped.load(Ordering::Relaxed) {
                let Ok(true) = event::poll(Duration::from_millis(100)) else {
                    continue;
                };
                let key = match event::read() {
                    Ok(Event::Key(k)) if k.kind == KeyEventKind::Press => match k.code {
                        KeyCode::Char('q') | KeyCode::Esc => Key::Quit,
                        KeyCode::Char('c') if k.modifiers.contains(KeyModifiers::CONTROL) => {
                            Key::Quit
                        }
                        _ => continue,
                    },
                    Ok(Event::Resize(..)) => Key::Redraw,
                    _ => continue,
                };
                if tx.blocking_send(key).is_err() {
                    return;
                }
            }
        });
        Ok(Self {
            term,
            keys,
            stop,
            colour: crate::output::colour(),
            interval,
        })
    }

    /// The next key; pending forever once the input thread has gone.
    pub async fn key(&mut self) -> Key {
        match self.keys.recv().await {
            Some(k) => k,
            None => std::future::pending().await,
        }
    }

    pub fn draw(&mut self, f: &Frame) -> Result<()> {
        let (colour, interval) = (self.colour, self.interval);
        self.term
            .draw(|ui| draw(ui, f, colour, interval))
            .map(|_| ())
            .map_err(|e| Error::Failed(format!("cannot draw on the terminal: {e}")))
    }
}

impl Drop for Tui {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        ratatui::restore();
    }
}

fn draw(ui: &mut ratatui::Frame, f: &Frame, colour: bool, interval: Duration) {
    let hosts_height = f.hosts.len() as u16 + 3; // borders and the header row
    let [title, hosts, services, footer] = Layout::vertical([
        Constraint::Length(1),
        Constraint::Length(hosts_height),
        Constraint::Min(3),
        Constraint::Length(f.notes.len() as u16 + 1),
    ])
    .areas(ui.area());
    let bold = Style::default().add_modifier(Modifier::BOLD);
    ui.render_widget(Paragraph::new(f.title.as_str()).style(bold), title);
    ui.render_widget(table(HOSTS, &f.hosts, " hosts ", colour), hosts);
    ui.render_widget(table(SERVICES, &f.services, " services ", colour), services);
    let mut lines: Vec<Line> = f.notes.iter().map(|n| Line::from(n.as_str())).collect();
    lines.push(Line::from(format!(
        "q quits; refreshed every {}",
        humantime::format_duration(interval)
    )));
    ui.render_widget(Paragraph::new(lines), footer);
}

/// A bordered table, each column as wide as its widest cell (display width).
fn table<'a, const N: usize>(
    header: [&'a str; N],
    rows: &'a [[String; N]],
    title: &'a str,
    colour: bool,
) -> Table<'a> {
    let mut widths = header.map(|h| Line::from(h).width());
    for r in rows {
        for (w, c) in widths.iter_mut().zip(r) {
            *w = (*w).max(Line::from(c.as_str()).width());
        }
    }
    let head = Row::new(header).style(Style::default().add_modifier(Modifier::BOLD));
    let body = rows.iter().map(|r| {
        Row::new(r.iter().map(|c| {
            let cell = Cell::from(c.as_str());
            match colour.then(|| tint(c)).flatten() {
                Some(color) => cell.style(Style::default().fg(color)),
                None => cell,
            }
        }))
    });
    Table::new(
        body,
        widths.map(|w| Constraint::Length(w.min(u16::MAX as usize) as u16)),
    )
    .header(head)
    .column_spacing(2)
    .block(Block::bordered().title(title))
}

/// Health and lifecycle words worth a colour.
fn tint(cell: &str) -> Option<Color> {
    match cell {
        "up" | "Running" => Some(Color::Green),
        "down" | "duplicate" => Some(Color::Red),
        c if c.starts_with("Failed") => Some(Color::Red),
        c if c.starts_with("Partial-Running") || c.starts_with("Scaling") => Some(Color::Yellow),
        _ => None,
    }
}
