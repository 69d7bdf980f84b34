//! Bakes the git revision into the binary for `obf_exporter_build_info` ("unknown" outside git).

use std::process::Command;

fn main() {
    let revision = std::env::var("OBF_EXPORTER_REVISION").ok().or_else(|| {
        let output = Command::new("git")
            .args(["rev-parse", "--short=12", "HEAD"])
            .output()
            .ok()?;
        output
            .status
            .success()
            .then(|| String::from_utf8_lossy(&output.stdout).trim().to_string())
            .filter(|r| !r.is_empty())
    });
    if let Some(revision) = revision {
        println!("cargo:rustc-env=OBF_EXPORTER_REVISION={revision}");
    }
    println!("cargo:rerun-if-env-changed=OBF_EXPORTER_REVISION");
    // Only inside a git checkout: naming a missing file would rerun this script on every build.
    if std::path::Path::new(".git/HEAD").exists() {
        println!("cargo:rerun-if-changed=.git/HEAD");
        println!("cargo:rerun-if-changed=.git/refs/heads");
        println!("cargo:rerun-if-changed=.git/packed-refs");
    }
}
