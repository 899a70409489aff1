//! One reading of a `/metrics` page (jobtrace's, or the kube-apiserver's), in the Prometheus or
//! `OpenMetrics` text format, and its samples.

/// One reading of a `/metrics` page.
pub struct Scrape {
    url: String,
    text: String,
}

impl Scrape {
    /// What `url` serves now; panics with the URL and the error when it can't be read, so that no
    /// check on a metric passes on a page that nobody served.
    pub async fn read(url: &str) -> Self {
        let response = reqwest::get(url)
            .await
            .unwrap_or_else(|e| panic!("can't read {url}: {e}"));
        let status = response.status();
        assert!(status.is_success(), "{url} answered {status}");
        let text = response
            .text()
            .await
            .unwrap_or_else(|e| panic!("can't read {url}: {e}"));
        Self {
            url: url.to_owned(),
            text,
        }
    }

    /// The kube-apiserver's own `/metrics`.
    pub async fn apiserver(client: &kube::Client) -> Self {
        let request = hyper::http::Request::get("/metrics")
            .body(Vec::new())
            .unwrap();
        let text = client
            .request_text(request)
            .await
            .expect("the apiserver's metrics");
        Self {
            url: "the kube-apiserver's /metrics".to_owned(),
            text,
        }
    }

    /// The labels (`{...}`, or empty) and the value of each sample named `name`.
    pub fn samples<'a>(&'a self, name: &'a str) -> impl Iterator<Item = (&'a str, &'a str)> {
        self.text
            .lines()
            .filter(|l| !l.starts_with('#'))
            .filter_map(move |l| {
                let rest = l.strip_prefix(name)?;
                let (labels, rest) = if rest.starts_with('{') {
                    rest.split_at(rest.find('}')? + 1)
                } else {
                    ("", rest)
                };
                // After the value, maybe a timestamp or an exemplar.
                let value = rest.strip_prefix(' ')?.split(' ').next()?;
                Some((labels, value))
            })
    }

    fn count(&self, name: &str, value: &str) -> u64 {
        value
            .parse()
            .unwrap_or_else(|e| panic!("{name} at {} is {value:?}, not a count: {e}", self.url))
    }

    /// The value of the sample `name`, which has no labels; panics when it is absent or repeats.
    fn only<'a>(&'a self, name: &'a str) -> &'a str {
        let values: Vec<&str> = self
            .samples(name)
            .filter(|(labels, _)| labels.is_empty())
            .map(|(_, value)| value)
            .collect();
        match values[..] {
            [value] => value,
            [] => panic!("{} has no {name}:\n{}", self.url, self.text),
            _ => panic!("{} has {name} more than once:\n{}", self.url, self.text),
        }
    }

    /// The value of the counter sample `name` (with its `_total`), which has no labels; panics
    /// when it is absent.
    pub fn counter(&self, name: &str) -> u64 {
        self.count(name, self.only(name))
    }

    /// The value of the gauge `name`, which has no labels; panics when it is absent.
    pub fn gauge(&self, name: &str) -> i64 {
        let value = self.only(name);
        value
            .parse()
            .unwrap_or_else(|e| panic!("{name} at {} is {value:?}: {e}", self.url))
    }

    /// The sum of the counter `family`'s series whose labels include `labels`: 0 when it has
    /// none (yet), but the family itself must be declared.
    pub fn counter_family(&self, family: &str, labels: &str) -> u64 {
        let declared = format!("# TYPE {family} counter");
        assert!(
            self.text.lines().any(|l| l == declared),
            "{} declares no counter {family}:\n{}",
            self.url,
            self.text
        );
        let name = format!("{family}_total");
        self.samples(&name)
            .filter(|(l, _)| l.contains(labels))
            .map(|(_, value)| self.count(&name, value))
            .sum()
    }

    /// The sum of the samples named `name` whose labels include each of `labels`
    /// (`key="value"`), whatever their type: 0 when there are none.
    pub fn sum(&self, name: &str, labels: &[&str]) -> f64 {
        self.samples(name)
            .filter(|(l, _)| labels.iter().all(|wanted| l.contains(wanted)))
            .filter_map(|(_, value)| value.parse::<f64>().ok())
            .sum()
    }
}
