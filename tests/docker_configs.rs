//! Every configuration shipped under `docker/` passes `respite --check`
//! (issue 7, acceptance 5), and the compose files mount only configurations
//! that exist there, so a broken container config fails CI, not a deploy.

use std::path::{Path, PathBuf};
use std::process::Command;

fn docker_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("docker")
}

fn files_ending(suffix: &str) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(docker_dir())
        .expect("read docker/")
        .map(|e| e.expect("dir entry").path())
        .filter(|p| p.to_string_lossy().ends_with(suffix))
        .collect();
    files.sort();
    files
}

#[test]
fn every_docker_config_passes_check() {
    let configs = files_ending(".toml");
    assert!(
        configs.len() >= 3,
        "expected the standalone, sentinel and cluster configs, found {configs:?}"
    );
    for config in configs {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_respite"));
        cmd.arg("--check").arg("--config").arg(&config);
        // The file alone must be valid: nothing from the test's environment.
        for (k, _) in std::env::vars_os() {
            if k.to_string_lossy().starts_with("RESPITE_") {
                cmd.env_remove(k);
            }
        }
        let out = cmd.output().expect("run respite --check");
        assert!(
            out.status.success(),
            "{} fails respite --check:\n{}{}",
            config.display(),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

#[test]
fn compose_files_mount_configs_that_exist() {
    let composes = files_ending(".yml");
    assert_eq!(
        composes.len(),
        3,
        "standalone, sentinel, cluster: {composes:?}"
    );
    for compose in composes {
        let text = std::fs::read_to_string(&compose).expect("read compose file");
        assert!(
            text.contains("dockerfile: docker/Dockerfile"),
            "{} does not build docker/Dockerfile",
            compose.display()
        );
        for line in text.lines() {
            let line = line.trim().trim_start_matches("- ");
            if let Some(mount) = line.strip_prefix("./") {
                let file = mount.split(':').next().unwrap_or_default();
                assert!(
                    docker_dir().join(file).is_file(),
                    "{} mounts missing {file}",
                    compose.display()
                );
            }
        }
    }
    let dockerfile = std::fs::read_to_string(docker_dir().join("Dockerfile")).expect("Dockerfile");
    assert!(dockerfile.contains("cargo build --release --locked"));
    assert!(dockerfile.contains("COPY docker/proxy.toml /etc/respite/proxy.toml"));
}
