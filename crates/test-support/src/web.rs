//! A stand-in for the web as `curl` on a host reaches it.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use exec_backend::{ExitStatus, Output};

/// URLs and their bodies, answered to `curl` command lines (through [`FsHost`](crate::FsHost)).
///
/// The contract kept, for the options curl is given by phoenix-gpu (`-f`, `-s`, `-S`, `-L`,
/// `-I`, `--retry N`, `-o FILE`, one URL); any other option panics, so that a test never
/// relies on behaviour the stand-in does not have:
///
/// | real curl | stand-in |
/// |---|---|
/// | `-I` prints the response headers, exit 0 even for a 404 unless `-f` | `HTTP/1.1 200 OK` with `Content-Length`, or `HTTP/1.1 404 Not Found` |
/// | a GET prints the body, or writes it to `-o FILE` | same; each GET is counted per URL ([`Web::gets`]) |
/// | `-f` and an HTTP error: exit 22, `curl: (22) The requested URL returned error: 404` | same |
/// | a transfer cut short: exit 18, the part received is left in `-o FILE` | with [`Web::cut_downloads`]: half the body, exit 18 |
/// | a slow server | [`Web::set_delay`] before each GET answers |
#[derive(Debug, Default)]
pub struct Web {
    urls: Mutex<BTreeMap<String, Vec<u8>>>,
    gets: Mutex<BTreeMap<String, usize>>,
    cut: AtomicBool,
    delay: Mutex<Duration>,
}

/// A parsed curl command line.
struct CurlArgs {
    url: String,
    head: bool,
    fail: bool,
    output: Option<PathBuf>,
}

fn out(code: i32, stdout: impl Into<Vec<u8>>, stderr: &str) -> Output {
    Output {
        status: ExitStatus::Code(code),
        stdout: stdout.into(),
        stderr: stderr.as_bytes().to_vec(),
    }
}

impl CurlArgs {
    fn parse(argv: &[String]) -> CurlArgs {
        let unknown =
            |a: &str| -> ! { panic!("the curl stand-in does not know {a:?} in {argv:?}") };
        let (mut url, mut head, mut fail, mut output) = (None, false, false, None);
        let mut it = argv.iter().skip(1);
        while let Some(a) = it.next() {
            match a.as_str() {
                "--retry" => {
                    it.next();
                }
                "-o" | "--output" => output = it.next().map(PathBuf::from),
                "--fail" => fail = true,
                "--head" => head = true,
                "--silent" | "--show-error" | "--location" => {}
                s if s.starts_with("--") => unknown(s),
                s if s.starts_with('-') && s.len() > 1 => {
                    for (i, c) in s.chars().skip(1).enumerate() {
                        match c {
                            'f' => fail = true,
                            'I' => head = true,
                            's' | 'S' | 'L' => {}
                            'o' if i + 2 == s.len() => output = it.next().map(PathBuf::from),
                            _ => unknown(s),
                        }
                    }
                }
                s if url.is_none() => url = Some(s.to_owned()),
                s => unknown(s),
            }
        }
        CurlArgs {
            url: url.unwrap_or_else(|| panic!("no URL in {argv:?}")),
            head,
            fail,
            output,
        }
    }
}

impl Web {
    /// Serves `body` at `url`.
    pub fn serve(&self, url: &str, body: impl Into<Vec<u8>>) {
        self.urls
            .lock()
            .unwrap()
            .insert(url.to_owned(), body.into());
    }

    /// How many GETs `url` had.
    pub fn gets(&self, url: &str) -> usize {
        self.gets.lock().unwrap().get(url).copied().unwrap_or(0)
    }

    /// From now on every GET is cut after half of the body (`on`), or whole again.
    pub fn cut_downloads(&self, on: bool) {
        self.cut.store(on, Ordering::SeqCst);
    }

    /// Each GET answers after `delay` (so that concurrent callers overlap).
    pub fn set_delay(&self, delay: Duration) {
        *self.delay.lock().unwrap() = delay;
    }

    /// What `curl` with `argv` (`argv[0]` is `curl`) prints and how it exits; a body asked
    /// for with `-o FILE` is written to FILE, a path on this machine.
    pub async fn curl(&self, argv: &[String]) -> Output {
        let a = CurlArgs::parse(argv);
        let body = self.urls.lock().unwrap().get(&a.url).cloned();
        if a.head {
            return match body {
                Some(b) => out(
                    0,
                    format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n", b.len()),
                    "",
                ),
                None if a.fail => out(22, "", "curl: (22) The requested URL returned error: 404"),
                None => out(0, "HTTP/1.1 404 Not Found\r\n\r\n", ""),
            };
        }
        *self.gets.lock().unwrap().entry(a.url.clone()).or_default() += 1;
        let delay = *self.delay.lock().unwrap();
        tokio::time::sleep(delay).await;
        let Some(body) = body else {
            return if a.fail {
                out(22, "", "curl: (22) The requested URL returned error: 404")
            } else {
                out(0, "", "")
            };
        };
        let (body, code, err) = if self.cut.load(Ordering::SeqCst) {
            (
                body[..body.len() / 2].to_vec(),
                18,
                "curl: (18) transfer closed with outstanding read data remaining",
            )
        } else {
            (body, 0, "")
        };
        match &a.output {
            Some(file) => {
                std::fs::write(file, &body).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
                out(code, "", err)
            }
            None => out(code, body, err),
        }
    }
}
