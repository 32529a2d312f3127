//! `#[ringloop::main]` and `#[ringloop::test]`.
//!
//! Use them through ringloop with its `macros` feature (`ringloop = { version = "0.1", features =
//! ["macros"] }`), not from this crate: the code they generate names `::ringloop`, so the
//! dependency must keep that name. With a renamed one (`rl = { package = "ringloop", .. }`),
//! put `extern crate rl as ringloop;` at the crate root.
//!
//! Both turn an `async fn` into a plain one that builds an event loop and runs the body on it. The
//! body becomes an inner `async fn` with the same signature, so `return`, `?` and the declared
//! return type work as they do in any `async fn`.

#![warn(missing_docs)]

use proc_macro::TokenStream;
use proc_macro2::{Span, TokenStream as TokenStream2};
use quote::{ToTokens, format_ident, quote, quote_spanned};
use syn::spanned::Spanned;
use syn::{Ident, ItemFn, LitBool, LitStr};

/// Runs `async fn main()` on a ringloop event loop.
///
/// ```
/// #[ringloop::main]
/// async fn main() -> std::io::Result<()> {
///     let listener = ringloop::net::TcpListener::bind("127.0.0.1:0")?;
///     println!("listening on {}", listener.local_addr()?);
///     Ok(())
/// }
/// ```
///
/// The loop's backend is the usual choice: `RINGLOOP_BACKEND` when it is set, else io_uring where
/// the kernel allows it and epoll otherwise. `#[ringloop::main(backend = "epoll")]` (or
/// `"uring"`) forces one; asking for `"uring"` where io_uring cannot run panics with the kernel's
/// reason instead of falling back. The loop is closed when `main` returns.
///
/// `main` may return anything a Rust `main` may (`()`, `Result<(), E: Debug>`, ...). It takes no
/// arguments: read them with `std::env::args()`.
#[proc_macro_attribute]
pub fn main(args: TokenStream, item: TokenStream) -> TokenStream {
    expand(Kind::Main, args.into(), item.into())
        .unwrap_or_else(syn::Error::into_compile_error)
        .into()
}

/// Makes an `async fn` a test that runs on ringloop, on every backend by default.
///
/// ```
/// #[ringloop::test]
/// async fn echoes() -> std::io::Result<()> {
///     let (a, b) = ringloop::net::UnixStream::pair()?;
///     // ...
///     Ok(())
/// }
/// ```
///
/// - By default the body runs once on each backend (io_uring, then epoll), each time on a fresh
///   loop; a failure says on which backend it happened (and whether the other passed). With
///   `RINGLOOP_BACKEND=uring` or `=epoll` set, only that backend runs.
/// - `#[ringloop::test(backend = "uring")]` (or `"epoll"`) runs it on that backend only.
/// - `#[ringloop::test(start_paused = true)]` starts each loop with its clock paused
///   (`ringloop::time::pause`): timers complete as soon as nothing else can run, without waiting.
/// - The body may return `()` or `Result<(), E>` with `E: Debug`; an `Err` fails the test.
/// - Where io_uring cannot run (an old kernel, a seccomp profile), the uring run **fails** with
///   the kernel's reason; it never passes silently. Pin `backend = "epoll"` on tests that must
///   pass there, or set `RINGLOOP_BACKEND=epoll`.
///
/// `#[should_panic]`, `#[ignore]` and other attributes apply to the generated test as usual;
/// under `#[should_panic]` the body must panic on every backend it runs on (a backend where it
/// passes fails the test).
#[proc_macro_attribute]
pub fn test(args: TokenStream, item: TokenStream) -> TokenStream {
    expand(Kind::Test, args.into(), item.into())
        .unwrap_or_else(syn::Error::into_compile_error)
        .into()
}

#[derive(Clone, Copy, PartialEq)]
enum Kind {
    Main,
    Test,
}

impl Kind {
    fn attr(self) -> &'static str {
        match self {
            Kind::Main => "#[ringloop::main]",
            Kind::Test => "#[ringloop::test]",
        }
    }

    fn options(self) -> &'static str {
        match self {
            Kind::Main => "`backend = \"uring\"` or `backend = \"epoll\"`",
            Kind::Test => "`backend = \"uring\"`, `backend = \"epoll\"` and `start_paused = true`",
        }
    }
}

#[derive(Default)]
struct Options {
    backend: Option<(Ident, Span)>,
    start_paused: Option<bool>,
}

fn parse_options(kind: Kind, args: TokenStream2) -> syn::Result<Options> {
    let mut opts = Options::default();
    let parser = syn::meta::parser(|meta| {
        if meta.path.is_ident("backend") {
            if opts.backend.is_some() {
                return Err(meta.error("`backend` is given twice: keep one"));
            }
            let value = meta.value()?;
            let lit: LitStr = value.parse().map_err(|e| {
                syn::Error::new(
                    e.span(),
                    "`backend` takes a string: write `backend = \"uring\"` or `backend = \"epoll\"`",
                )
            })?;
            let variant = match lit.value().as_str() {
                "uring" => "Uring",
                "epoll" => "Epoll",
                "io_uring" | "proactor" => {
                    return Err(syn::Error::new(
                        lit.span(),
                        "the io_uring backend is spelled `backend = \"uring\"` here",
                    ));
                }
                "selector" => {
                    return Err(syn::Error::new(
                        lit.span(),
                        "the epoll backend is spelled `backend = \"epoll\"` here",
                    ));
                }
                "auto" => {
                    let what = match kind {
                        Kind::Main => {
                            "`auto` is the default: remove `backend = \"auto\"` (RINGLOOP_BACKEND \
                             and the kernel then decide)"
                        }
                        Kind::Test => {
                            "a test runs on every backend by default: remove `backend = \"auto\"`, \
                             or pin one with `backend = \"uring\"` or `backend = \"epoll\"`"
                        }
                    };
                    return Err(syn::Error::new(lit.span(), what));
                }
                other => {
                    return Err(syn::Error::new(
                        lit.span(),
                        format!(
                            "unknown backend {other:?}: write `backend = \"uring\"` or \
                             `backend = \"epoll\"`"
                        ),
                    ));
                }
            };
            opts.backend = Some((Ident::new(variant, lit.span()), lit.span()));
            Ok(())
        } else if meta.path.is_ident("start_paused") {
            if kind == Kind::Main {
                return Err(meta.error(
                    "`start_paused` is an option of #[ringloop::test]; in a program, call \
                     `ringloop::time::pause()` where the clock should stop",
                ));
            }
            if opts.start_paused.is_some() {
                return Err(meta.error("`start_paused` is given twice: keep one"));
            }
            let value = meta.value()?;
            let lit: LitBool = value.parse().map_err(|e| {
                syn::Error::new(
                    e.span(),
                    "`start_paused` takes a bool: write `start_paused = true`",
                )
            })?;
            opts.start_paused = Some(lit.value);
            Ok(())
        } else {
            let name = meta
                .path
                .get_ident()
                .map(|i| format!("`{i}`"))
                .unwrap_or_else(|| "this option".to_owned());
            Err(meta.error(format!(
                "unknown option {name}: {} accepts {}",
                kind.attr(),
                kind.options()
            )))
        }
    });
    syn::parse::Parser::parse2(parser, args)?;
    Ok(opts)
}

fn expand(kind: Kind, args: TokenStream2, item: TokenStream2) -> syn::Result<TokenStream2> {
    let mut func: ItemFn = syn::parse2(item)?;
    let checked = parse_options(kind, args).and_then(|opts| {
        check_signature(kind, &func)?;
        Ok(opts)
    });
    let opts = match checked {
        Ok(opts) => opts,
        Err(e) => {
            // The error, and a stand-in with the function's name and return type, so that the
            // rest of the crate (a `main` the compiler looks for, callers) adds no errors of its
            // own.
            let error = e.into_compile_error();
            let name = &func.sig.ident;
            let generics = &func.sig.generics;
            let where_clause = &func.sig.generics.where_clause;
            let output = &func.sig.output;
            return Ok(quote! {
                #error
                #[allow(dead_code, unreachable_code, unused_variables)]
                fn #name #generics() #output #where_clause { ::core::unimplemented!() }
            });
        }
    };

    // The body becomes an inner `async fn` with the user's signature (renamed), so `?`, `return`
    // and the return type behave exactly as written; the outer fn is plain and runs it on a loop.
    let outer_attrs = std::mem::take(&mut func.attrs);
    let vis = std::mem::replace(&mut func.vis, syn::Visibility::Inherited);
    let name = func.sig.ident.clone();
    let output = func.sig.output.to_token_stream();
    let inner = format_ident!("__ringloop_{}_body", name, span = Span::mixed_site());
    func.sig.ident = inner.clone();
    let backend = match &opts.backend {
        Some((variant, span)) => {
            quote_spanned!(*span=> ::core::option::Option::Some(::ringloop::Backend::#variant))
        }
        None => quote!(::core::option::Option::None),
    };
    let span = func.sig.fn_token.span();
    // The body's output is checked where `run_test` takes the body: point that error at the
    // return type.
    let ret_span = match &func.sig.output {
        syn::ReturnType::Type(_, ty) => ty.span(),
        syn::ReturnType::Default => span,
    };
    Ok(match kind {
        Kind::Main => quote_spanned! {span=>
            #(#outer_attrs)*
            #vis fn #name() #output {
                #func
                ::ringloop::__private::run_main(#backend, #inner())
            }
        },
        Kind::Test => {
            let paused = opts.start_paused.unwrap_or(false);
            // Under `#[should_panic]` the test must panic on every backend it runs on: one
            // that passes makes the whole test return normally, which libtest reports as a
            // failure ("did not panic as expected").
            let expect_panic = outer_attrs
                .iter()
                .any(|a| a.path().is_ident("should_panic"));
            let run = quote_spanned! {ret_span=>
                ::ringloop::__private::run_test(
                    ::core::concat!(::core::module_path!(), "::", ::core::stringify!(#name)),
                    #backend,
                    #paused,
                    #expect_panic,
                    #inner,
                )
            };
            quote_spanned! {span=>
                #[::core::prelude::v1::test]
                #(#outer_attrs)*
                #vis fn #name() {
                    #func
                    #run
                }
            }
        }
    })
}

fn check_signature(kind: Kind, func: &ItemFn) -> syn::Result<()> {
    let sig = &func.sig;
    let attr = kind.attr();
    let what = match kind {
        Kind::Main => "async fn main()",
        Kind::Test => "async fn my_test()",
    };
    if sig.asyncness.is_none() {
        return Err(syn::Error::new(
            sig.fn_token.span,
            format!("{attr} goes on an `async fn`: add `async` before `fn` (`{what}`)"),
        ));
    }
    if !sig.generics.params.is_empty() || sig.generics.where_clause.is_some() {
        return Err(syn::Error::new_spanned(
            &sig.generics,
            format!("{attr} functions cannot be generic: remove the type and lifetime parameters"),
        ));
    }
    if !sig.inputs.is_empty() {
        let instead = match kind {
            Kind::Main => {
                "#[ringloop::main] runs `async fn main()`, which takes no arguments: remove them \
                 and read the command line with `std::env::args()`"
            }
            Kind::Test => {
                "#[ringloop::test] runs a test function, which takes no arguments: remove them \
                 and build what the test needs inside its body"
            }
        };
        return Err(syn::Error::new_spanned(&sig.inputs, instead));
    }
    if let Some(variadic) = &sig.variadic {
        return Err(syn::Error::new_spanned(
            variadic,
            format!("{attr} functions take no arguments"),
        ));
    }
    if kind == Kind::Test
        && let Some(test) = func.attrs.iter().find(|a| a.path().is_ident("test"))
    {
        return Err(syn::Error::new_spanned(
            test,
            "#[ringloop::test] already makes this function a test: remove `#[test]`",
        ));
    }
    Ok(())
}
