use std::{os::unix::fs::PermissionsExt, path::Path};

use super::*;

#[test]
fn the_format_comes_from_the_name_unless_asked() {
    let f = |p: &str, asked| ReportFormat::for_path(Path::new(p), asked);
    assert_eq!(f("leaks.json", None), Ok(ReportFormat::Json));
    assert_eq!(f("LEAKS.MD", None), Ok(ReportFormat::Md));
    assert_eq!(f("x.report", Some(ReportFormat::Md)), Ok(ReportFormat::Md));
    assert_eq!(f("x.html", None), Ok(ReportFormat::Html));
    assert_eq!(f("x.HTM", None), Ok(ReportFormat::Html));
    let unknown = f("report", None).unwrap_err().to_string();
    assert!(unknown.contains("end it in .json, .md or .html"), "{unknown}");
    assert_eq!(f("report", None), Err(ReportError::Unknown("report".into())));
}

#[test]
fn written_whole_and_private() {
    let dir = std::env::temp_dir().join(format!("tracer-report-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("r.json");
    std::fs::write(&path, "old").unwrap();
    write_private(&path, b"{\"new\": 1}\n").unwrap();
    assert_eq!(std::fs::read_to_string(&path).unwrap(), "{\"new\": 1}\n");
    assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
    let left: Vec<_> = std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert_eq!(left, vec![std::ffi::OsString::from("r.json")], "no temporary file left behind");
    // A directory that does not exist: an error, nothing written.
    assert!(write_private(&dir.join("no/such/dir/r.json"), b"x").is_err());
    std::fs::remove_dir_all(&dir).unwrap();
}
