//! The crate's modules form layers: each imports only modules below it.

#[test]
fn modules_import_no_cycle() {
    let src = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    btrfsqa_model::layers::assert_layered(&src);
}
