// Package chart holds the tests of the Helm chart (charts/smaregi-operator);
// see chart_test.go. It has no non-test code.
package chart
