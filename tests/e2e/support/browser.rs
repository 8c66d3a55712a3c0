//! A real headless Chromium driven over WebDriver (`chromedriver`, Debian's `chromium-driver`)
//! with fantoccini, for the console's tests. Each [`Browser`] has its own chromedriver on a free
//! port and a fresh profile directory; browsers are used one at a time (a process-wide lock), as
//! two Chromiums at once on a small machine mostly measure the machine.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fantoccini::{Client, ClientBuilder, Locator};

/// One browser at a time.
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Chromium's flags: headless, no sandbox (containers), nothing fetched in the background.
pub const CHROMIUM_FLAGS: &[&str] = &[
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
];

/// A headless Chromium with its chromedriver, and the console's base URL.
pub struct Browser {
    pub client: Client,
    pub base: String,
    driver: Child,
    _profile: tempfile::TempDir,
    _turn: tokio::sync::MutexGuard<'static, ()>,
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Where screenshots go: `target/console-screenshots/`.
pub fn screenshot_dir() -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .parent()
        .map(|p| p.join("console-screenshots"))
        .unwrap_or_else(|| PathBuf::from("target/console-screenshots"));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

impl Browser {
    /// Starts chromedriver and a Chromium at 1280×900 for the engine at `base`.
    pub async fn start(base: &str) -> Self {
        let turn = ONE_AT_A_TIME.lock().await;
        let port = free_port();
        let driver = Command::new("chromedriver")
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromedriver runs (apt-get install -y chromium chromium-driver)");
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "chromedriver did not listen on {port}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let profile = tempfile::tempdir().unwrap();
        let mut args: Vec<String> = CHROMIUM_FLAGS.iter().map(|f| f.to_string()).collect();
        args.push(format!("--user-data-dir={}", profile.path().display()));
        args.push("--window-size=1280,900".into());
        let mut capabilities = serde_json::Map::new();
        capabilities.insert(
            "goog:chromeOptions".into(),
            serde_json::json!({"binary": "/usr/bin/chromium", "args": args}),
        );
        let client = ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
            .capabilities(capabilities)
            .connect(&format!("http://127.0.0.1:{port}"))
            .await
            .expect("a Chromium session");
        Self {
            client,
            base: base.trim_end_matches('/').to_string(),
            driver,
            _profile: profile,
            _turn: turn,
        }
    }

    /// Opens `path` (relative to the engine) or an absolute URL.
    pub async fn open(&self, path: &str) {
        let url = if path.starts_with("http") {
            path.to_string()
        } else {
            format!("{}{path}", self.base)
        };
        self.client.goto(&url).await.unwrap();
    }

    /// The element `css` (waiting a little for it).
    pub async fn find(&self, css: &str) -> fantoccini::elements::Element {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            match self.client.find(Locator::Css(css)).await {
                Ok(element) => return element,
                Err(e) => {
                    if Instant::now() > deadline {
                        let url = self.client.current_url().await.unwrap();
                        panic!("no `{css}` on {url}: {e}\n{}", self.source().await);
                    }
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        }
    }

    /// Every element `css`.
    pub async fn find_all(&self, css: &str) -> Vec<fantoccini::elements::Element> {
        self.client.find_all(Locator::Css(css)).await.unwrap()
    }

    /// Types `text` into the control `css` (cleared first).
    pub async fn fill(&self, css: &str, text: &str) {
        let element = self.find(css).await;
        element.clear().await.unwrap();
        element.send_keys(text).await.unwrap();
    }

    /// Chooses the option with `value` of the select `css`.
    pub async fn choose(&self, css: &str, value: &str) {
        self.find(css).await.select_by_value(value).await.unwrap();
    }

    /// Clicks `css`.
    pub async fn click(&self, css: &str) {
        self.find(css).await.click().await.unwrap();
    }

    /// The text of `css` (found again when the page was replaced between finding and reading,
    /// as during a navigation or a refresh).
    pub async fn text(&self, css: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            match self.find(css).await.text().await {
                Ok(text) => return text,
                Err(e) if Instant::now() < deadline => {
                    let _ = e;
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                Err(e) => panic!("reading the text of {css}: {e}"),
            }
        }
    }

    /// The page's HTML.
    pub async fn source(&self) -> String {
        self.client.source().await.unwrap_or_default()
    }

    /// The page's path.
    pub async fn path(&self) -> String {
        self.client.current_url().await.unwrap().path().to_string()
    }

    /// Waits until the browser is on `path` (after redirects and refreshes).
    pub async fn wait_for_path(&self, path: &str) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while self.path().await != path {
            assert!(
                Instant::now() < deadline,
                "still on {} instead of {path}:\n{}",
                self.path().await,
                self.text("body").await
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Waits until the page's text holds `needle`, reloading every 200 ms (for states the
    /// engine reaches in the background).
    pub async fn wait_for_text(&self, needle: &str, within: Duration) {
        let deadline = Instant::now() + within;
        loop {
            let body = self.text("body").await;
            if body.contains(needle) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "`{needle}` did not appear within {within:?}:\n{body}"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
            self.client.refresh().await.unwrap();
        }
    }

    /// Waits until the page shows `needle` WITHOUT reloading it (what the page's own script
    /// updates).
    pub async fn wait_for_text_in_place(&self, needle: &str, within: Duration) {
        let deadline = Instant::now() + within;
        loop {
            let body = self.text("body").await;
            if body.contains(needle) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "`{needle}` did not appear in place within {within:?}:\n{body}"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Saves a screenshot as `target/console-screenshots/<name>.png`.
    pub async fn screenshot(&self, name: &str) {
        let png = self.client.screenshot().await.unwrap();
        std::fs::write(screenshot_dir().join(format!("{name}.png")), png).unwrap();
    }

    /// Closes the browser and its driver.
    pub async fn close(mut self) {
        let _ = self.client.clone().close().await;
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.driver.kill();
    }
}
