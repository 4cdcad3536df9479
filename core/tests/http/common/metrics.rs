//! Reading the Prometheus text format a host serves at `/metrics`.

/// One sample line: its metric name, labels and value.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub name: String,
    pub labels: Vec<(String, String)>,
    pub value: f64,
}

/// Every sample of an exposition (comment lines left out). Label values may hold `{`,
/// `}`, `,` and escaped quotes (route templates do).
pub fn samples(text: &str) -> Vec<Sample> {
    text.lines()
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(|line| parse_sample(line).unwrap_or_else(|| panic!("not a sample line: {line:?}")))
        .collect()
}

fn parse_sample(line: &str) -> Option<Sample> {
    let name_end = line.find(['{', ' '])?;
    let name = line[..name_end].to_owned();
    let mut labels = Vec::new();
    let mut rest = &line[name_end..];
    if let Some(inner) = rest.strip_prefix('{') {
        let mut chars = inner.char_indices().peekable();
        let mut key = String::new();
        loop {
            let (i, c) = chars.next()?;
            match c {
                '}' => {
                    rest = &inner[i + 1..];
                    break;
                }
                ',' => {}
                '=' => {
                    if chars.next()?.1 != '"' {
                        return None;
                    }
                    let mut value = String::new();
                    loop {
                        match chars.next()?.1 {
                            '\\' => match chars.next()?.1 {
                                'n' => value.push('\n'),
                                other => value.push(other),
                            },
                            '"' => break,
                            other => value.push(other),
                        }
                    }
                    labels.push((std::mem::take(&mut key), value));
                }
                other => key.push(other),
            }
        }
    }
    let value = rest.trim().split(' ').next()?;
    let value = match value {
        "+Inf" => f64::INFINITY,
        "-Inf" => f64::NEG_INFINITY,
        v => v.parse().ok()?,
    };
    Some(Sample {
        name,
        labels,
        value,
    })
}

/// The value of the series `name` whose labels include every one of `labels`, summed
/// over the series that match; 0 when none does (a series appears with its first event).
pub fn metric_value(text: &str, name: &str, labels: &[(&str, &str)]) -> f64 {
    samples(text)
        .iter()
        .filter(|s| s.name == name)
        .filter(|s| {
            labels
                .iter()
                .all(|(k, v)| s.labels.iter().any(|(sk, sv)| sk == k && sv == v))
        })
        .map(|s| s.value)
        .sum()
}

/// `after - before` of [`metric_value`].
pub fn metric_delta(before: &str, after: &str, name: &str, labels: &[(&str, &str)]) -> f64 {
    metric_value(after, name, labels) - metric_value(before, name, labels)
}

/// The declared type (`counter`, `gauge`, `histogram`, `summary`) of each metric.
pub fn metric_types(text: &str) -> std::collections::BTreeMap<String, String> {
    text.lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.split_once(' '))
        .map(|(name, kind)| (name.to_owned(), kind.trim().to_owned()))
        .collect()
}

#[test]
fn the_parser_reads_labels_with_braces_and_escapes() {
    let text = "# HELP x_total Things.\n# TYPE x_total counter\n\
                x_total{route=\"/a/{id}\",method=\"GET\",q=\"say \\\"hi\\\", ok\"} 3\n\
                x_total{route=\"/b\",method=\"GET\",q=\"\"} 4\n\
                y_bucket{le=\"+Inf\"} 7\ny 1.5\n";
    assert_eq!(metric_value(text, "x_total", &[("route", "/a/{id}")]), 3.0);
    assert_eq!(metric_value(text, "x_total", &[("method", "GET")]), 7.0);
    assert_eq!(
        metric_value(text, "x_total", &[("q", "say \"hi\", ok")]),
        3.0
    );
    assert_eq!(metric_value(text, "x_total", &[("route", "/c")]), 0.0);
    assert_eq!(metric_value(text, "y", &[]), 1.5);
    assert_eq!(metric_value(text, "y_bucket", &[("le", "+Inf")]), 7.0);
    assert_eq!(metric_types(text)["x_total"], "counter");
}
