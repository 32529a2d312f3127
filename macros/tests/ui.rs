//! Misuse of `#[ringloop::main]` and `#[ringloop::test]` is a compile error that says what to
//! write instead, pointing at the offending tokens (the expected messages are the `.stderr`
//! files next to each case; regenerate them with `TRYBUILD=overwrite` and review the diff).

#[test]
fn misuse_is_a_compile_error_that_says_what_to_write() {
    let cases = trybuild::TestCases::new();
    cases.compile_fail("tests/ui/*.rs");
}

/// Not a macro, but the place with trybuild: passing a borrowed buffer to an owned-buffer I/O
/// method is an error that says which buffers work (`#[diagnostic::on_unimplemented]` on
/// `IoBuf` and `IoBufMut`), not one pointing into the method's internals.
#[test]
fn a_borrowed_buffer_is_an_error_that_names_the_owned_ones() {
    let cases = trybuild::TestCases::new();
    cases.compile_fail("tests/ui_buffers/*.rs");
}
