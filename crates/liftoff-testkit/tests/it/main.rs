//! liftoff-testkit's integration tests, one module per subject, built as one test
//! binary: a binary per file linked every dependency again for each.

mod fake_binaries;
mod kube_fake_kubectl;
mod kube_fake_pods;
mod kube_fake_python;
