//! Go's `text/tabwriter` (left-aligned, space padding), which kubectl
//! aligns `get` tables (padding 3) and `describe` output (padding 2) with.
//!
//! Text is cells ending in `\t`; the text after a line's last tab is not a
//! cell and is not padded. A column block is a run of consecutive lines
//! that have a cell in that column; every cell of a block is padded to the
//! block's widest cell plus the padding. A line without tabs ends every
//! block.

/// Collects text, then aligns it.
#[derive(Debug, Default)]
pub struct TabWriter {
    padding: usize,
    text: String,
}

impl TabWriter {
    pub fn new(padding: usize) -> Self {
        TabWriter {
            padding,
            text: String::new(),
        }
    }

    /// Adds text; `\n` ends a line, `\t` ends a cell.
    pub fn write(&mut self, text: &str) {
        self.text.push_str(text);
    }

    /// One line of cells (the last one is not padded).
    pub fn row<S: AsRef<str>>(&mut self, cells: &[S]) {
        for (i, cell) in cells.iter().enumerate() {
            if i > 0 {
                self.text.push('\t');
            }
            self.text.push_str(cell.as_ref());
        }
        self.text.push('\n');
    }

    /// The aligned text.
    pub fn finish(self) -> String {
        let body = self.text.strip_suffix('\n').unwrap_or(&self.text);
        if body.is_empty() {
            return String::new();
        }
        let lines: Vec<Vec<String>> = body
            .split('\n')
            .map(|l| l.split('\t').map(str::to_string).collect())
            .collect();
        let mut widths = Vec::new();
        let mut out = String::new();
        format(&lines, self.padding, &mut widths, 0, lines.len(), &mut out);
        out
    }
}

fn width(s: &str) -> usize {
    s.chars().count()
}

/// Go's `Writer.format`: aligns lines `line0..line1` given the widths of
/// the columns to the left.
fn format(
    lines: &[Vec<String>],
    padding: usize,
    widths: &mut Vec<usize>,
    mut line0: usize,
    line1: usize,
    out: &mut String,
) {
    let column = widths.len();
    let mut this = line0;
    while this < line1 {
        if column + 1 >= lines[this].len() {
            this += 1;
            continue;
        }
        write_lines(lines, widths, line0, this, out);
        line0 = this;
        let mut w = 0;
        while this < line1 && column + 1 < lines[this].len() {
            w = w.max(width(&lines[this][column]) + padding);
            this += 1;
        }
        widths.push(w);
        format(lines, padding, widths, line0, this, out);
        widths.pop();
        line0 = this;
    }
    write_lines(lines, widths, line0, line1, out);
}

fn write_lines(
    lines: &[Vec<String>],
    widths: &[usize],
    line0: usize,
    line1: usize,
    out: &mut String,
) {
    for line in &lines[line0..line1] {
        for (j, cell) in line.iter().enumerate() {
            out.push_str(cell);
            if j + 1 < line.len() {
                let w = widths.get(j).copied().unwrap_or(0);
                out.extend(std::iter::repeat_n(' ', w.saturating_sub(width(cell))));
            }
        }
        out.push('\n');
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn get_table() {
        let mut t = TabWriter::new(3);
        t.row(&["NAME", "READY", "STATUS", "AGE"]);
        t.row(&["web", "0/1", "Pending", "5s"]);
        t.row(&["database", "1/1", "Running", "10m"]);
        assert_eq!(
            t.finish(),
            "NAME       READY   STATUS    AGE\n\
             web        0/1     Pending   5s\n\
             database   1/1     Running   10m\n"
        );
    }

    #[test]
    fn blocks_end_at_lines_without_tabs() {
        let mut t = TabWriter::new(2);
        t.write("Name:\tweb\n");
        t.write("Namespace:\tdefault\n");
        t.write("Containers:\n");
        t.write("  app:\n");
        t.write("    Image:\tbusybox\n");
        t.write("    Restart Count:\t0\n");
        t.write("Events:\t<none>\n");
        assert_eq!(
            t.finish(),
            "Name:       web\n\
             Namespace:  default\n\
             Containers:\n  app:\n\
             \x20   Image:          busybox\n\
             \x20   Restart Count:  0\n\
             Events:             <none>\n"
        );
    }

    #[test]
    fn pieces_join_into_lines() {
        let mut t = TabWriter::new(1);
        t.write("a\t");
        t.write("b\nlonger\tc\n");
        assert_eq!(t.finish(), "a      b\nlonger c\n");
    }

    #[test]
    fn nested_columns_align_within_their_block() {
        let mut t = TabWriter::new(2);
        t.write("x\ty\tz\n");
        t.write("xx\ty\n");
        t.write("x\tyyyy\tz\n");
        // Column 1 has cells in lines 1 and 3 only, which are not adjacent.
        assert_eq!(t.finish(), "x   y  z\nxx  y\nx   yyyy  z\n");
    }
}
