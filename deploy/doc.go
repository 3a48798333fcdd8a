// Package deploy holds what the production topology needs besides the
// image: Temporal's dynamic config for docker-compose.yml. It has no code;
// its tests check docker-compose.yml and the Dockerfile (both at the
// repository root) against the code they configure, since no Docker
// engine runs where the tests do:
//
//   - every variable set for a ctmflow service is one package config
//     reads, each process gets the variables its role requires, and the
//     values pass validation;
//   - the commands and health checks name real subcommands, ports and
//     routes;
//   - Temporal's server configuration renders from the compose
//     environment to a Postgres-backed cluster on the right databases,
//     and its dynamic config file loads without errors;
//   - the Dockerfile builds the production binary (-tags nodev,
//     CGO_ENABLED=0), and that binary runs.
package deploy
