//! Misuse of `#[ringloop::main]` and `#[ringloop::test]` is a compile error that says what to
//! write instead, pointing at the offending tokens (the expected messages are the `.stderr`
//! files next to each case; regenerate them with `TRYBUILD=overwrite` and review the diff).

#[test]
fn misuse_is_a_compile_error_that_says_what_to_write() {
    let cases = trybuild::TestCases::new();
    cases.compile_fail("tests/ui/*.rs");
}
