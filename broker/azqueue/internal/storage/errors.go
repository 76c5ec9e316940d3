package storage

import (
	"errors"
	"fmt"
	"net/http"
	"time"
)

// Error is a failed request to the queue service.
type Error struct {
	// Op is the operation, such as "dequeue" or "create queue".
	Op string
	// Queue is the queue's name, empty for account-level operations.
	Queue string
	// StatusCode is the HTTP status, 0 when no response arrived.
	StatusCode int
	// Code is the service's error code, such as "QueueNotFound".
	Code string
	// Err is the transport error when no response arrived, or nil.
	Err error
	// RetryAfter is the pause the service asked for (its Retry-After
	// header, on 503 ServerBusy), 0 when it asked for none.
	RetryAfter time.Duration
	// Detail is the first line of the service's AuthenticationErrorDetail,
	// which says why it refused a credential ("Lifetime validation
	// failed. The token is expired."); empty when it gave none. Error does
	// not print it: with a SAS, it quotes the string the service signed.
	Detail string
}

// Error implements error. It never includes a URL or a credential.
func (e *Error) Error() string {
	target := ""
	if e.Queue != "" {
		target = fmt.Sprintf(" queue %q", e.Queue)
	}
	switch {
	case e.StatusCode == 0 && e.Err != nil:
		return fmt.Sprintf("%s%s: %v", e.Op, target, e.Err)
	case e.Code == CodeAuthorizationPermissionMismatch:
		// Only Entra ID identities get this answer: say what they lack
		// wherever the error ends up.
		return fmt.Sprintf("%s%s: %d %s (%s: the identity needs the %s role)", e.Op, target, e.StatusCode, http.StatusText(e.StatusCode), e.Code, DataRole)
	case e.Code != "":
		return fmt.Sprintf("%s%s: %d %s (%s)", e.Op, target, e.StatusCode, http.StatusText(e.StatusCode), e.Code)
	default:
		return fmt.Sprintf("%s%s: %d %s", e.Op, target, e.StatusCode, http.StatusText(e.StatusCode))
	}
}

// Unwrap returns the transport error, if any.
func (e *Error) Unwrap() error { return e.Err }

// Service error codes the broker branches on.
const (
	CodeQueueNotFound      = "QueueNotFound"
	CodeMessageNotFound    = "MessageNotFound"
	CodePopReceiptMismatch = "PopReceiptMismatch"
	CodeServerBusy         = "ServerBusy"
	CodeOperationTimedOut  = "OperationTimedOut"
	// CodeAuthorizationPermissionMismatch: an Entra ID identity without a
	// data role that allows the operation.
	CodeAuthorizationPermissionMismatch = "AuthorizationPermissionMismatch"
)

// DataRole is the Azure role that allows every operation the broker makes;
// azqueue.DataRole documents it.
const DataRole = "Storage Queue Data Contributor"

// IsQueueNotFound reports whether err says the queue does not exist.
func IsQueueNotFound(err error) bool {
	var e *Error
	return errors.As(err, &e) && e.Code == CodeQueueNotFound
}

// IsLeaseLost reports whether err says a message's lease is gone: the message
// was deleted, or another consumer leased it and holds a newer pop receipt.
func IsLeaseLost(err error) bool {
	var e *Error
	if !errors.As(err, &e) {
		return false
	}
	return e.Code == CodeMessageNotFound || e.Code == CodePopReceiptMismatch ||
		(e.StatusCode == http.StatusNotFound && e.Code != CodeQueueNotFound)
}

// IsMessageNotFound reports whether err says the message does not exist
// (any more): deleted, or expired.
func IsMessageNotFound(err error) bool {
	var e *Error
	return errors.As(err, &e) && e.Code == CodeMessageNotFound
}

// IsServerBusy reports whether err is a 503 ServerBusy: the queue or the
// account is past its scalability targets and sheds load.
func IsServerBusy(err error) bool {
	var e *Error
	return errors.As(err, &e) && e.StatusCode == http.StatusServiceUnavailable
}

// IsAuth reports whether err says the credentials were refused.
func IsAuth(err error) bool {
	var e *Error
	return errors.As(err, &e) && (e.StatusCode == http.StatusForbidden || e.StatusCode == http.StatusUnauthorized)
}

// IsTransport reports whether err is a failure to get any answer from the
// service (connection refused, timeout, DNS) or a server-side 5xx error:
// the kind worth retrying after a pause.
func IsTransport(err error) bool {
	var e *Error
	return errors.As(err, &e) && (e.StatusCode == 0 || e.StatusCode >= 500)
}
