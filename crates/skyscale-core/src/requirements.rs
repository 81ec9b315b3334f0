//! A function's `requirements.txt`, built for the sandbox's Python into a layer.
//!
//! # Design
//!
//! **What is implemented here today: the cache key and the lookup (below). The build, the
//! API and the CLI are the design that follows, not yet code.**
//!
//! - *The cache key.* The requirements text is normalised ([`normalise`]: line
//!   continuations joined, comments (`#` at a line's start or after whitespace, as pip reads
//!   them) and blank lines dropped, runs of whitespace made one space; order kept, since
//!   pip's resolution may depend on it). Lines that name other files (`-r`, `-c`, `-e`,
//!   local paths, `file:` URLs) are refused by name: only the one file goes to the build,
//!   so they could not be honoured. The key is the SHA-256 of a versioned preamble, the
//!   runtime (`python3.X`: the interpreter, hence the ABI and the wheels pip picks), the
//!   pip options that change what is installed ([`PipOptions`]: the index and extra
//!   indexes; `PIP_TRUSTED_HOST` only relaxes TLS checking, so it is passed through but
//!   not hashed) and the normalised text. Hash lines (`--hash=sha256:…`) are part of the
//!   text, so pinning hashes gives another key.
//! - *The lookup.* The layer is named `skyscale-deps-<first 16 hex digits of the key>`
//!   and its version's description carries the whole key and the runtime
//!   ([`DepsKey::description`]); a version of that layer for that runtime with that exact
//!   description is reused as it is, with no sandbox and no pip ([`find_cached`]). A
//!   version whose description differs (a prefix collision, or a layer a user published
//!   under that name) is never reused. Functions with the same requirements on the same
//!   runtime share the one layer version.
//! - *What runs where (the build, not yet built).* The control plane boots one sandbox of
//!   the function's runtime through the configured driver (runc, gVisor; the process
//!   driver for trusted use), with `SandboxSpec::network` set: outbound network is given to
//!   that build sandbox only, never to the function's sandboxes, which keep their own
//!   setting. The sandbox's `/var/task` holds `requirements.txt` and a small builder
//!   handler that runs `python3 -m pip install --target /tmp/build/python -r
//!   requirements.txt` with the sandbox's own interpreter (so wheels match its Python and
//!   libc) and `PIP_INDEX_URL`, `PIP_EXTRA_INDEX_URL` and `PIP_TRUSTED_HOST` from the
//!   control plane's environment. pip enters hash-checking mode by itself when any line
//!   has a `--hash`, as `--require-hashes` does, so hashes are honoured as pip honours
//!   them. Nothing is installed into the host's Python. pip's output is the invocation's
//!   output, captured line by line.
//! - *Progress.* The captured lines are forwarded as they come: the `/v1` deploy answers
//!   with a stream of progress events (server-sent events) ending in the result, and the
//!   CLI prints them.
//! - *Publishing.* The build's `/tmp/build` is zipped (`python/...`) and published as the
//!   next version of the key's layer, compatible with the one runtime, with the key's
//!   description; then it is an ordinary layer version (immutable, counted in the 250 MB).
//! - *Failure leaves the function unchanged.* The layer is built (or found) before the
//!   function is touched; the new code and the layer list (the deps layer first, then the
//!   function's other layers) are stored in one update. A failed build is an error that
//!   carries pip's message, and since nothing was stored the previous code and layers
//!   keep answering.

use sha2::{Digest, Sha256};
use skyscale_store::{LayerVersionRecord, Store};
use skyscale_types::{LayerName, Runtime};

use crate::CoreError;

/// The prefix of every requirements layer's name.
pub const DEPS_LAYER_PREFIX: &str = "skyscale-deps-";
/// How many hex digits of the key name the layer (64 bits).
const NAME_DIGITS: usize = 16;
/// Changes whenever the build's result for the same inputs would change (the key's
/// preamble), so that older layers are not reused for a different build.
const KEY_VERSION: &str = "skyscale-deps v1";

/// The pip settings that pass from the control plane's environment to a build.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PipOptions {
    /// `PIP_INDEX_URL`.
    pub index_url: Option<String>,
    /// `PIP_EXTRA_INDEX_URL` (whitespace-separated, as pip reads it).
    pub extra_index_urls: Vec<String>,
    /// `PIP_TRUSTED_HOST` (whitespace-separated). Not part of the key: it does not change
    /// what is installed.
    pub trusted_hosts: Vec<String>,
}

impl PipOptions {
    /// The options from an environment (`var`: the control plane's `std::env::var`).
    pub fn from_env(var: impl Fn(&str) -> Option<String>) -> Self {
        let list = |name: &str| -> Vec<String> {
            var(name)
                .map(|v| v.split_whitespace().map(str::to_owned).collect())
                .unwrap_or_default()
        };
        Self {
            index_url: var("PIP_INDEX_URL")
                .map(|v| v.trim().to_owned())
                .filter(|v| !v.is_empty()),
            extra_index_urls: list("PIP_EXTRA_INDEX_URL"),
            trusted_hosts: list("PIP_TRUSTED_HOST"),
        }
    }

    /// The variables a build sandbox is given.
    pub fn env(&self) -> Vec<(String, String)> {
        let mut env = Vec::new();
        if let Some(u) = &self.index_url {
            env.push(("PIP_INDEX_URL".to_owned(), u.clone()));
        }
        if !self.extra_index_urls.is_empty() {
            env.push((
                "PIP_EXTRA_INDEX_URL".to_owned(),
                self.extra_index_urls.join(" "),
            ));
        }
        if !self.trusted_hosts.is_empty() {
            env.push(("PIP_TRUSTED_HOST".to_owned(), self.trusted_hosts.join(" ")));
        }
        env
    }
}

/// Normalises a `requirements.txt` (see the module's documentation); refuses, by name and
/// line, what a build of this one file could not honour, and a file that requires nothing.
pub fn normalise(text: &str) -> Result<String, CoreError> {
    let mut lines: Vec<String> = Vec::new();
    let mut logical = String::new();
    let mut first_line = 1;
    for (i, raw) in text.lines().enumerate() {
        if logical.is_empty() {
            first_line = i + 1;
        }
        // pip joins a line ending in a backslash with the next, before stripping comments.
        if let Some(head) = raw.strip_suffix('\\') {
            logical.push_str(head);
            logical.push(' ');
            continue;
        }
        logical.push_str(raw);
        if let Some(line) = normalise_line(&logical, first_line)? {
            lines.push(line);
        }
        logical.clear();
    }
    if let Some(line) = normalise_line(&logical, first_line)? {
        lines.push(line);
    }
    if !lines.iter().any(|l| !l.starts_with('-')) {
        return Err(CoreError::InvalidParameter(
            "requirements.txt requires no package: nothing to install".into(),
        ));
    }
    Ok(lines.join("\n"))
}

/// One logical line without its comment and with single spaces; `None` when blank.
fn normalise_line(line: &str, number: usize) -> Result<Option<String>, CoreError> {
    // A comment starts at a `#` at the start of the line or after whitespace (pip's rule:
    // a `#` inside a URL fragment is not one).
    let mut end = line.len();
    let mut prev_ws = true;
    for (i, c) in line.char_indices() {
        if c == '#' && prev_ws {
            end = i;
            break;
        }
        prev_ws = c.is_whitespace();
    }
    let words: Vec<&str> = line[..end].split_whitespace().collect();
    let Some(first) = words.first() else {
        return Ok(None);
    };
    let refuse = |what: &str| {
        Err(CoreError::InvalidParameter(format!(
            "requirements.txt line {number}: {what} is not supported (only this one file is \
             sent to the build: list the packages themselves, from an index or a URL)"
        )))
    };
    let option = first.split('=').next().unwrap_or(first);
    match option {
        "-r" | "--requirement" => return refuse("including another file (-r)"),
        "-c" | "--constraint" => return refuse("a constraints file (-c)"),
        "-e" | "--editable" => return refuse("an editable install (-e)"),
        "-f" | "--find-links" => return refuse("--find-links"),
        _ => {}
    }
    if first.starts_with("-r")
        || first.starts_with("-c")
        || first.starts_with("-e")
        || first.starts_with("-f")
    {
        return refuse(&format!("option {first:?}"));
    }
    if first.starts_with('.')
        || first.starts_with('/')
        || first.starts_with('~')
        || words.iter().any(|w| {
            let w = w.to_ascii_lowercase();
            w.starts_with("file:") || w.contains("@file:")
        })
    {
        return refuse(&format!("a local path ({first})"));
    }
    Ok(Some(words.join(" ")))
}

/// The cache key of a requirements build (see the module's documentation).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DepsKey {
    /// SHA-256, lower-case hex.
    pub sha256: String,
    pub runtime: Runtime,
}

impl DepsKey {
    /// The key of `normalised` requirements (from [`normalise`]) for `runtime`.
    pub fn new(normalised: &str, runtime: &Runtime, pip: &PipOptions) -> Self {
        let mut h = Sha256::new();
        // Each part is length-prefixed, so no two different inputs hash the same text.
        let mut part = |s: &str| {
            h.update((s.len() as u64).to_be_bytes());
            h.update(s.as_bytes());
        };
        part(KEY_VERSION);
        part(runtime.as_str());
        part(pip.index_url.as_deref().unwrap_or(""));
        part(&pip.extra_index_urls.join(" "));
        part(normalised);
        Self {
            sha256: hex::encode(h.finalize()),
            runtime: runtime.clone(),
        }
    }

    /// `skyscale-deps-<first 16 hex digits>`.
    pub fn layer_name(&self) -> LayerName {
        #[allow(clippy::expect_used)] // a fixed prefix and hex digits: always a valid name
        LayerName::parse(&format!(
            "{DEPS_LAYER_PREFIX}{}",
            &self.sha256[..NAME_DIGITS]
        ))
        .expect("a valid layer name")
    }

    /// The description its layer versions carry: the whole key and the runtime.
    pub fn description(&self) -> String {
        format!(
            "requirements.txt built for {} (key sha256:{})",
            self.runtime, self.sha256
        )
    }
}

/// The layer version already built for `key`, if any: the newest version of its layer
/// that is for exactly its runtime and carries exactly its description (blocking).
pub fn find_cached(store: &Store, key: &DepsKey) -> Result<Option<LayerVersionRecord>, CoreError> {
    let description = key.description();
    Ok(store
        .list_layer_versions(&key.layer_name())?
        .into_iter()
        .find(|v| v.description == description && v.compatible_runtimes == [key.runtime.clone()]))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use skyscale_store::{CodeRef, NewLayerVersion};

    use super::*;

    fn py(v: &str) -> Runtime {
        Runtime::parse(v).unwrap()
    }

    fn key(text: &str) -> DepsKey {
        DepsKey::new(
            &normalise(text).unwrap(),
            &py("python3.12"),
            &PipOptions::default(),
        )
    }

    #[test]
    fn comments_blank_lines_and_spacing_do_not_change_the_key() {
        let plain = "requests==2.32.3\npydantic-core==2.27.2\n";
        let noisy = "# deps\n\n  requests==2.32.3   # http\n\npydantic-core==2.27.2\n";
        assert_eq!(
            normalise(noisy).unwrap(),
            "requests==2.32.3\npydantic-core==2.27.2"
        );
        assert_eq!(key(plain), key(noisy));
        // Windows line endings too.
        assert_eq!(key(plain), key(&plain.replace('\n', "\r\n")));
    }

    #[test]
    fn continuations_are_joined_and_hashes_kept() {
        let text = "six==1.16.0 \\\n    --hash=sha256:aaaa \\\n    --hash=sha256:bbbb\n";
        assert_eq!(
            normalise(text).unwrap(),
            "six==1.16.0 --hash=sha256:aaaa --hash=sha256:bbbb"
        );
        assert_ne!(
            key(text),
            key("six==1.16.0\n"),
            "hashes are part of the key"
        );
        // A '#' inside a word (a URL's fragment) is not a comment.
        assert_eq!(
            normalise("pkg @ https://h/p.zip#sha256=abc").unwrap(),
            "pkg @ https://h/p.zip#sha256=abc"
        );
    }

    #[test]
    fn what_changes_the_result_changes_the_key() {
        let base = key("six==1.16.0");
        assert_ne!(base, key("six==1.17.0"));
        assert_ne!(base, key("six==1.16.0\nattrs"));
        // Order is kept: pip's resolution may depend on it.
        assert_ne!(key("a\nb"), key("b\na"));
        let n = normalise("six==1.16.0").unwrap();
        assert_ne!(
            base,
            DepsKey::new(&n, &py("python3.11"), &PipOptions::default())
        );
        let index = PipOptions::from_env(|v| {
            (v == "PIP_INDEX_URL").then(|| "https://mirror.example/simple".to_owned())
        });
        assert_ne!(base, DepsKey::new(&n, &py("python3.12"), &index));
        let extra = PipOptions::from_env(|v| {
            (v == "PIP_EXTRA_INDEX_URL").then(|| "https://extra.example/simple".to_owned())
        });
        assert_ne!(base, DepsKey::new(&n, &py("python3.12"), &extra));
        // A trusted host does not change what is installed.
        let trusted = PipOptions::from_env(|v| {
            (v == "PIP_TRUSTED_HOST").then(|| "mirror.example".to_owned())
        });
        assert_eq!(base, DepsKey::new(&n, &py("python3.12"), &trusted));
        assert_eq!(
            trusted.env(),
            vec![("PIP_TRUSTED_HOST".to_owned(), "mirror.example".to_owned())]
        );
    }

    #[test]
    fn pip_options_pass_through_as_pip_reads_them() {
        let o = PipOptions::from_env(|v| match v {
            "PIP_INDEX_URL" => Some(" https://i/simple ".into()),
            "PIP_EXTRA_INDEX_URL" => Some("https://a/simple  https://b/simple".into()),
            _ => None,
        });
        assert_eq!(o.index_url.as_deref(), Some("https://i/simple"));
        assert_eq!(o.extra_index_urls, ["https://a/simple", "https://b/simple"]);
        assert_eq!(
            o.env(),
            vec![
                ("PIP_INDEX_URL".to_owned(), "https://i/simple".to_owned()),
                (
                    "PIP_EXTRA_INDEX_URL".to_owned(),
                    "https://a/simple https://b/simple".to_owned()
                ),
            ]
        );
        assert!(PipOptions::from_env(|_| None).env().is_empty());
    }

    #[test]
    fn what_a_single_file_build_cannot_honour_is_refused_by_name() {
        for (text, says) in [
            ("-r base.txt", "-r"),
            ("--requirement=base.txt", "-r"),
            ("six\n-c constraints.txt", "line 2: a constraints file"),
            ("-e git+https://h/r.git#egg=x", "editable"),
            ("--find-links ./wheels\nsix", "--find-links"),
            ("./mypkg", "local path"),
            ("/abs/pkg.whl", "local path"),
            ("file:///tmp/pkg.whl", "local path"),
            ("pkg @ file:///tmp/pkg.whl", "local path"),
        ] {
            let e = normalise(text).unwrap_err().to_string();
            assert!(e.contains(says), "{text:?}: {e}");
            assert!(e.contains("requirements.txt line"), "{text:?}: {e}");
        }
        for text in ["", "# only a comment\n\n", "--index-url https://i/simple"] {
            let e = normalise(text).unwrap_err().to_string();
            assert!(e.contains("requires no package"), "{text:?}: {e}");
        }
        // Options pip accepts in the file stay (and count in the key).
        assert_eq!(
            normalise("--index-url https://i/simple\nsix").unwrap(),
            "--index-url https://i/simple\nsix"
        );
    }

    #[test]
    fn the_layer_name_is_valid_and_carries_the_key_prefix() {
        let k = key("six");
        let name = k.layer_name();
        assert_eq!(name.as_str(), format!("skyscale-deps-{}", &k.sha256[..16]));
        assert!(k.description().contains(&k.sha256));
        assert!(k.description().contains("python3.12"));
    }

    #[test]
    fn an_existing_build_is_found_and_nothing_else_is() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("db.sqlite")).unwrap();
        let k = key("six==1.16.0");
        assert!(
            find_cached(&store, &k).unwrap().is_none(),
            "nothing built yet"
        );

        let publish = |description: String, runtime: &str, c: char| {
            store
                .publish_layer_version(&NewLayerVersion {
                    layer: k.layer_name(),
                    description,
                    license: None,
                    compatible_runtimes: vec![py(runtime)],
                    code: CodeRef {
                        sha256: c.to_string().repeat(64),
                        size: 10,
                    },
                    unzipped_size: 100,
                })
                .unwrap()
        };
        // Same name, but not this key's build (another runtime, another description).
        publish(k.description(), "python3.11", 'a');
        publish("published by hand".into(), "python3.12", 'b');
        assert!(find_cached(&store, &k).unwrap().is_none());

        let built = publish(k.description(), "python3.12", 'c');
        let found = find_cached(&store, &k).unwrap().unwrap();
        assert_eq!((found.version, found.code), (built.version, built.code));
        // Another key's layer is another layer.
        assert!(find_cached(&store, &key("six==1.17.0")).unwrap().is_none());
    }
}
