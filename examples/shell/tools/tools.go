//go:build tools

// Package tools pins the programs the shell example runs.
package tools

import _ "github.com/equinix-labs/otel-cli"
