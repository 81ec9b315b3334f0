//! Reading server-sent events (log follows, streamed requirements builds).

use std::io::BufRead;

/// Reads server-sent events: `(event name, data)` per event; comments and `id`/`retry`
/// fields are skipped.
pub(crate) struct SseReader<R> {
    lines: R,
}

impl<R: BufRead> SseReader<R> {
    pub fn new(lines: R) -> Self {
        Self { lines }
    }

    /// The next event, or `None` at the end of the stream.
    pub fn next(&mut self) -> std::io::Result<Option<(String, String)>> {
        let mut event = String::new();
        let mut data: Option<String> = None;
        let mut line = String::new();
        loop {
            line.clear();
            if self.lines.read_line(&mut line)? == 0 {
                return Ok(None);
            }
            let l = line.trim_end_matches(['\n', '\r']);
            if l.is_empty() {
                match data.take() {
                    Some(d) => {
                        let name = if event.is_empty() { "message" } else { &event };
                        return Ok(Some((name.to_owned(), d)));
                    }
                    None => {
                        event.clear();
                        continue;
                    }
                }
            }
            if l.starts_with(':') {
                continue;
            }
            let (field, value) = l.split_once(':').unwrap_or((l, ""));
            let value = value.strip_prefix(' ').unwrap_or(value);
            match field {
                "event" => value.clone_into(&mut event),
                "data" => match &mut data {
                    Some(d) => {
                        d.push('\n');
                        d.push_str(value);
                    }
                    None => data = Some(value.to_owned()),
                },
                _ => {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_server_sent_events() {
        let stream = ": keep-alive\n\nevent: log\nid: 3\ndata: {\"a\":1}\n\n\
                      data: one\ndata: two\n\n: keep-alive\n\nevent: skipped\r\ndata: x\r\n\r\n\
                      event: cut";
        let mut r = SseReader::new(stream.as_bytes());
        assert_eq!(
            r.next().unwrap(),
            Some(("log".to_owned(), "{\"a\":1}".to_owned()))
        );
        assert_eq!(
            r.next().unwrap(),
            Some(("message".to_owned(), "one\ntwo".to_owned()))
        );
        assert_eq!(
            r.next().unwrap(),
            Some(("skipped".to_owned(), "x".to_owned()))
        );
        assert_eq!(r.next().unwrap(), None);
    }
}
