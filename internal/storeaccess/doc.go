// Package storeaccess is how the operator talks to one store's Smaregi, in
// one place for every component that does (the SmaregiStore controller's
// credential check, the sync engine's pulls, the adjustment pusher and the
// hub API's product lookups):
//
//   - Target: where and as whom (endpoint, contract, store, access token);
//   - the credentials Secret: ReadToken and the Tokens cache, with one trim
//     rule and one message for a missing Secret or key (ConfigError);
//   - Clients: the client factory, drawing every call of a contract from
//     the process's one per-contract rate limiter;
//   - Explain: one table from Smaregi's answers (legacy error codes and
//     Platform API causes) to a condition reason and the remedy a person
//     applies in Smaregi's admin screen or developer console.
//
// When two copies of these rules existed they drifted: a token Secret
// written with `kubectl create secret --from-file` (trailing newline) made
// the store Ready while every productCode lookup failed.
package storeaccess
