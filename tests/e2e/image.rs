//! jobtrace's image as the real node runs it (`hack/jobtrace-image.sh`, no Docker engine) is laid
//! out as the Dockerfile's final stage says: the same files with the same contents, the same
//! user, ports, entrypoint and command.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

use crate::clients::repo;

/// What an image holds and how it runs.
#[derive(Debug, PartialEq, Eq)]
struct Layout {
    /// Each regular file's path in the image, and where its contents come from in the checkout.
    files: BTreeMap<String, Vec<u8>>,
    user: String,
    ports: Vec<String>,
    entrypoint: Vec<String>,
    cmd: Vec<String>,
}

/// A JSON array instruction's arguments (`ENTRYPOINT ["/jobtrace"]`).
fn exec_form(rest: &str) -> Vec<String> {
    serde_json::from_str(rest).unwrap_or_else(|e| panic!("not the exec form: {rest}: {e}"))
}

/// The final stage of the Dockerfile, its build stage's `/out` being what `make static` builds.
fn from_the_dockerfile() -> Layout {
    let text = std::fs::read_to_string(repo().join("Dockerfile")).unwrap();
    let stage: Vec<&str> = text
        .lines()
        .rev()
        .take_while(|l| !l.starts_with("FROM "))
        .collect::<Vec<_>>()
        .into_iter()
        .rev()
        .collect();
    let mut layout = Layout {
        files: BTreeMap::new(),
        user: String::new(),
        ports: Vec::new(),
        entrypoint: Vec::new(),
        cmd: Vec::new(),
    };
    for line in stage {
        let (instruction, rest) = line.split_once(' ').unwrap_or((line, ""));
        match instruction {
            "COPY" => {
                let mut words: Vec<&str> = rest.split_whitespace().collect();
                let from_build = words[0] == "--from=build";
                if from_build {
                    words.remove(0);
                }
                let (dest, sources) = words.split_last().unwrap();
                for source in sources {
                    let origin = if from_build {
                        let built = source.strip_prefix("/out/").expect("the build's output");
                        repo().join("target/static").join(built)
                    } else {
                        repo().join(source)
                    };
                    let path = if dest.ends_with('/') {
                        format!(
                            "{dest}{}",
                            Path::new(source).file_name().unwrap().to_str().unwrap()
                        )
                    } else {
                        (*dest).to_owned()
                    };
                    let contents = std::fs::read(&origin)
                        .unwrap_or_else(|e| panic!("{}: {e} (make static)", origin.display()));
                    layout.files.insert(path, contents);
                }
            }
            "USER" => rest.clone_into(&mut layout.user),
            "EXPOSE" => layout
                .ports
                .extend(rest.split_whitespace().map(|p| format!("{p}/tcp"))),
            "ENTRYPOINT" => layout.entrypoint = exec_form(rest),
            "CMD" => layout.cmd = exec_form(rest),
            _ => {}
        }
    }
    layout.ports.sort();
    layout
}

fn blob(dir: &Path, digest: &str) -> PathBuf {
    dir.join("blobs/sha256")
        .join(digest.strip_prefix("sha256:").unwrap())
}

fn json(path: &Path) -> Value {
    serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
}

fn regular_files(root: &Path, dir: &Path, out: &mut BTreeMap<String, Vec<u8>>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let entry = entry.unwrap();
        let kind = entry.file_type().unwrap();
        if kind.is_dir() {
            regular_files(root, &entry.path(), out);
        } else {
            let path = entry.path();
            let inside = format!("/{}", path.strip_prefix(root).unwrap().display());
            assert!(kind.is_file(), "{inside}: only regular files");
            out.insert(inside, std::fs::read(&path).unwrap());
        }
    }
}

/// A directory removed when dropped.
struct Scratch(PathBuf);

impl Scratch {
    fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The image's OCI layout as `hack/jobtrace-image.sh` saved it.
fn from_the_image(layout_tar: &Path) -> Layout {
    let dir = Scratch(std::env::temp_dir().join(format!("jobtrace-image-{}", std::process::id())));
    let _ = std::fs::remove_dir_all(dir.path());
    let untar = |archive: &Path, into: &Path| {
        std::fs::create_dir_all(into).unwrap();
        let status = Command::new("tar")
            .arg("-xf")
            .arg(archive)
            .arg("-C")
            .arg(into)
            .status()
            .unwrap();
        assert!(status.success(), "tar -xf {}", archive.display());
    };
    untar(layout_tar, dir.path());
    let index = json(&dir.path().join("index.json"));
    let manifests = index["manifests"].as_array().unwrap();
    assert_eq!(manifests.len(), 1, "one image: {index}");
    let manifest = json(&blob(dir.path(), manifests[0]["digest"].as_str().unwrap()));
    let config = json(&blob(
        dir.path(),
        manifest["config"]["digest"].as_str().unwrap(),
    ));
    let rootfs = dir.path().join("rootfs");
    for layer in manifest["layers"].as_array().unwrap() {
        untar(
            &blob(dir.path(), layer["digest"].as_str().unwrap()),
            &rootfs,
        );
    }
    let mut files = BTreeMap::new();
    regular_files(&rootfs, &rootfs, &mut files);
    let strings = |value: &Value| -> Vec<String> {
        value
            .as_array()
            .into_iter()
            .flatten()
            .map(|v| v.as_str().unwrap().to_owned())
            .collect()
    };
    let run = &config["config"];
    let mut ports: Vec<String> = run["ExposedPorts"]
        .as_object()
        .into_iter()
        .flatten()
        .map(|(port, _)| port.clone())
        .collect();
    ports.sort();
    Layout {
        files,
        user: run["User"].as_str().unwrap_or_default().to_owned(),
        ports,
        entrypoint: strings(&run["Entrypoint"]),
        cmd: strings(&run["Cmd"]),
    }
}

#[test]
fn the_image_the_node_runs_is_laid_out_as_the_dockerfile_says() {
    let saved = repo().join("target/image/jobtrace.oci.tar");
    assert!(
        saved.exists(),
        "{} is missing: hack/jobtrace-image.sh (make e2e) builds it",
        saved.display()
    );
    let image = from_the_image(&saved);
    let dockerfile = from_the_dockerfile();
    let paths = |l: &Layout| l.files.keys().cloned().collect::<Vec<_>>();
    assert_eq!(paths(&image), paths(&dockerfile), "the same files");
    for (path, contents) in &dockerfile.files {
        assert!(
            image.files[path] == *contents,
            "{path}: the image's copy differs from the Dockerfile's source"
        );
    }
    assert_eq!(
        (&image.user, &image.ports, &image.entrypoint, &image.cmd),
        (
            &dockerfile.user,
            &dockerfile.ports,
            &dockerfile.entrypoint,
            &dockerfile.cmd
        ),
        "user, ports, entrypoint and command"
    );
}
