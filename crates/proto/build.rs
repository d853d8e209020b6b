//! Generates the tonic/prost code for `proto/*.proto`. protoc comes vendored so no system
//! package is needed.
fn main() -> Result<(), Box<dyn std::error::Error>> {
    if std::env::var_os("PROTOC").is_none() {
        // SAFETY-free: build scripts are single-threaded at this point.
        let protoc = protoc_bin_vendored::protoc_bin_path()?;
        // set_var is unsafe in edition 2024 because of other threads; build.rs has none.
        #[allow(unsafe_code)]
        unsafe {
            std::env::set_var("PROTOC", protoc);
        }
    }
    // Read at run time, not with env!(): cargo shares one compiled build script between
    // checkouts of the workspace at different paths (the CI clone, a worktree), and a path baked
    // in at compile time would make every checkout build the first one's proto file.
    let manifest_dir = std::env::var_os("CARGO_MANIFEST_DIR").ok_or("CARGO_MANIFEST_DIR is not set")?;
    let root = std::path::Path::new(&manifest_dir).join("../../proto");
    let file = root.join("mailraft.proto");
    println!("cargo:rerun-if-changed={}", file.display());
    tonic_prost_build::configure().compile_protos(&[file], &[root])?;
    Ok(())
}
