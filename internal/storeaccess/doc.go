// Package storeaccess is how the operator talks to one store's Smaregi, in
// one place for every component that does (the SmaregiStore controller's
// credential check, the sync engine's pulls, the adjustment pusher and the
// hub API's product lookups):
//
//   - Target: where and as whom (API, endpoints, contract, store,
//     credentials: a legacy access token or a Platform app's client ID and
//     secret);
//   - the credentials Secret: ReadCredentials and the Tokens cache, with one
//     trim rule and one message for a missing Secret or key (ConfigError);
//   - Backend: the one interface the engine, the pusher, the credential
//     check and the hub API call (list stock, add stock all-or-none, read
//     the change history, look products up), with its two implementations,
//     legacy and Platform, and the error predicates over both (IsAmbiguous,
//     IsTransient, IsRefusedConfig, NeedsFullReconcile). Nothing above this
//     package knows which API a store speaks;
//   - Clients: the backend factory, drawing every call of a contract from
//     the process's shared rate limiters (and Platform token cache);
//   - Explain: one table from Smaregi's answers (legacy error codes and
//     Platform API causes) to a condition reason and the remedy a person
//     applies in Smaregi's admin screen or developer console.
//
// When two copies of these rules existed they drifted: a token Secret
// written with `kubectl create secret --from-file` (trailing newline) made
// the store Ready while every productCode lookup failed.
package storeaccess
