// Package azqueue is a go-micro v2 broker over Azure Storage Queues.
//
// Importing the package registers it in go-micro's broker table as
// "azqueue", so a service selects it with --broker=azqueue or
// MICRO_BROKER=azqueue. Work in progress: see the project README.
package azqueue
