package storage

import (
	"bytes"
	"context"
	"errors"
	"html"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/Azure/azure-pipeline-go/pipeline"
	"github.com/Azure/azure-storage-queue-go/azqueue"
)

// PipelineConfig says how requests reach the service: credentials, retries
// and the HTTP client.
type PipelineConfig struct {
	// Credential signs requests: azqueue.NewSharedKeyCredential for an account
	// key, azqueue.NewAnonymousCredential for a SAS carried in the URL.
	Credential azqueue.Credential
	// Retry configures the SDK's retry policy for one request.
	Retry azqueue.RetryOptions
	// HTTPClient sends the requests; nil means NewHTTPClient().
	HTTPClient *http.Client
	// Policies run after the retry policy, once per try, closest to the wire;
	// the broker uses one to count requests.
	Policies []pipeline.Factory
	// RequestPolicies run before the retry policy, once per request however
	// many tries it takes; the broker uses one to count retries.
	RequestPolicies []pipeline.Factory
}

// NewPipeline builds the request pipeline. Unlike azqueue.NewPipeline it has
// no request-log policy: that policy force-logs every failed request,
// including its URL, to syslog, which would put a SAS token in a log and
// floods the log during an outage. The broker reports failures itself.
func NewPipeline(c PipelineConfig) pipeline.Pipeline {
	client := c.HTTPClient
	if client == nil {
		client = NewHTTPClient()
	}
	factories := []pipeline.Factory{
		azqueue.NewTelemetryPolicyFactory(azqueue.TelemetryOptions{Value: "poc-go-micro-azqueue"}),
		azqueue.NewUniqueRequestIDPolicyFactory(),
		keepDeadline(),
	}
	factories = append(factories, c.RequestPolicies...)
	factories = append(factories, azqueue.NewRetryPolicyFactory(c.Retry))
	factories = append(factories, c.Policies...)
	if c.Credential != nil {
		factories = append(factories, c.Credential)
	}
	factories = append(factories, pipeline.MethodFactoryMarker())
	return pipeline.NewPipeline(factories, pipeline.Options{HTTPSender: httpSender(client)})
}

// NewHTTPClient returns the HTTP client the broker uses by default: keep-alive
// connections, enough idle connections per host for concurrent handlers
// (Go's default of 2 makes every burst open new connections), and dial and
// header timeouts so a dead endpoint fails fast instead of hanging a poll.
func NewHTTPClient() *http.Client {
	return &http.Client{
		Transport: &http.Transport{
			Proxy:                 http.ProxyFromEnvironment,
			DialContext:           (&net.Dialer{Timeout: 10 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
			MaxIdleConns:          256,
			MaxIdleConnsPerHost:   128,
			IdleConnTimeout:       90 * time.Second,
			TLSHandshakeTimeout:   10 * time.Second,
			ResponseHeaderTimeout: 60 * time.Second,
			ExpectContinueTimeout: time.Second,
		},
	}
}

// keepDeadline hides the caller's deadline from the SDK's retry policy, which
// cuts the time left to whole seconds and uses that as each try's timeout:
// with 1.9s left a try got 1s, and with less than 1s left every try failed at
// once without reaching the service (a 1s ConnectTimeout could never
// connect). Tries then get the retry policy's TryTimeout, and the request
// still ends at the caller's deadline, whose error is returned.
func keepDeadline() pipeline.Factory {
	return pipeline.FactoryFunc(func(next pipeline.Policy, _ *pipeline.PolicyOptions) pipeline.PolicyFunc {
		return func(ctx context.Context, request pipeline.Request) (pipeline.Response, error) {
			if _, ok := ctx.Deadline(); !ok {
				return next.Do(ctx, request)
			}
			// Not sent at all once the deadline has passed (inner would only
			// learn of it after the request had gone out).
			if err := ctx.Err(); err != nil {
				return nil, err
			}
			// inner ends when ctx does. The SDK's responders, at the end of
			// the pipeline, have read and closed the response body by the
			// time next.Do returns, so inner can end then too (leaving the
			// AfterFunc registered cost a goroutine per request when ctx
			// ended later, and kept one registration per request alive on a
			// long-lived ctx).
			inner, cancel := context.WithCancel(context.WithoutCancel(ctx))
			stop := context.AfterFunc(ctx, cancel)
			response, err := next.Do(inner, request)
			stop()
			cancel()
			if err != nil && ctx.Err() != nil {
				return nil, ctx.Err()
			}
			return response, err
		}
	})
}

func httpSender(client *http.Client) pipeline.Factory {
	return pipeline.FactoryFunc(func(next pipeline.Policy, po *pipeline.PolicyOptions) pipeline.PolicyFunc {
		return func(ctx context.Context, request pipeline.Request) (pipeline.Response, error) {
			r, err := client.Do(request.WithContext(ctx))
			if err != nil {
				return nil, pipeline.NewError(err, "HTTP request failed")
			}
			if r.StatusCode == http.StatusUnauthorized || r.StatusCode == http.StatusForbidden {
				noteAuthenticationDetail(r)
			}
			return pipeline.NewHTTPResponse(r), nil
		}
	})
}

// Operations, as ObserveRequests names them.
const (
	OpListQueues    = "list_queues"
	OpCreateQueue   = "create_queue"
	OpDeleteQueue   = "delete_queue"
	OpGetProperties = "get_properties"
	OpSetMetadata   = "set_metadata"
	OpEnqueue       = "enqueue"
	OpDequeue       = "dequeue"
	OpPeek          = "peek"
	OpClear         = "clear"
	OpUpdate        = "update_message"
	OpDelete        = "delete_message"
	OpOther         = "other"
)

// ObserveRequests returns a policy that counts every request it sends in
// sent and, unless observe is nil, calls it with the operation, the HTTP
// status of the answer (0 when none came) and the service's error code (""
// on success). Placed among PipelineConfig.Policies, it sees every try.
func ObserveRequests(sent *atomic.Int64, observe func(op string, status int, code string)) pipeline.Factory {
	return pipeline.FactoryFunc(func(next pipeline.Policy, _ *pipeline.PolicyOptions) pipeline.PolicyFunc {
		return func(ctx context.Context, r pipeline.Request) (pipeline.Response, error) {
			sent.Add(1)
			resp, err := next.Do(ctx, r)
			if observe == nil {
				return resp, err
			}
			var answer *http.Response
			var se azqueue.StorageError
			switch {
			case resp != nil && resp.Response() != nil:
				answer = resp.Response()
			case errors.As(err, &se):
				answer = se.Response()
			}
			status, code := 0, ""
			if answer != nil {
				status, code = answer.StatusCode, answer.Header.Get("x-ms-error-code")
			}
			observe(requestOp(r.Method, r.URL), status, code)
			return resp, err
		}
	})
}

// requestOp names the operation of a request to the queue service from its
// method and URL: the path ends in <queue>, <queue>/messages or
// <queue>/messages/<id> after the account's own path, whatever that is.
func requestOp(method string, u *url.URL) string {
	query := u.Query()
	segments := strings.Split(strings.Trim(u.Path, "/"), "/")
	last := segments[len(segments)-1]
	switch {
	case query.Get("comp") == "list":
		return OpListQueues
	case last == "messages":
		switch method {
		case http.MethodPost:
			return OpEnqueue
		case http.MethodDelete:
			return OpClear
		case http.MethodGet:
			if query.Get("peekonly") == "true" {
				return OpPeek
			}
			return OpDequeue
		}
	case len(segments) >= 2 && segments[len(segments)-2] == "messages":
		switch method {
		case http.MethodPut:
			return OpUpdate
		case http.MethodDelete:
			return OpDelete
		}
	case query.Get("comp") == "metadata":
		if method == http.MethodPut {
			return OpSetMetadata
		}
		return OpGetProperties
	case method == http.MethodPut:
		return OpCreateQueue
	case method == http.MethodDelete:
		return OpDeleteQueue
	}
	return OpOther
}

// NewService returns a Service for the queue service at serviceURL, sending
// requests through p. A SAS token, if any, is part of serviceURL's query.
func NewService(serviceURL url.URL, p pipeline.Pipeline) Service {
	return sdkService{url: azqueue.NewServiceURL(serviceURL, p)}
}

type sdkService struct {
	url azqueue.ServiceURL
}

func (s sdkService) Ping(ctx context.Context) error {
	// Listing at most one queue is the cheapest authenticated call that a
	// SAS limited to the queue service may also make (Get Service Properties
	// needs account-level permissions).
	_, err := s.url.ListQueuesSegment(ctx, azqueue.Marker{}, azqueue.ListQueuesSegmentOptions{MaxResults: 1})
	return convert("connect", "", err)
}

func (s sdkService) ListQueues(ctx context.Context, prefix string) ([]QueueInfo, error) {
	var queues []QueueInfo
	opts := azqueue.ListQueuesSegmentOptions{Prefix: prefix, Detail: azqueue.ListQueuesSegmentDetails{Metadata: true}}
	for marker := (azqueue.Marker{}); marker.NotDone(); {
		resp, err := s.url.ListQueuesSegment(ctx, marker, opts)
		if err != nil {
			return nil, convert("list queues", "", err)
		}
		for _, item := range resp.QueueItems {
			queues = append(queues, QueueInfo{Name: item.Name, Metadata: item.Metadata})
		}
		marker = resp.NextMarker
	}
	return queues, nil
}

func (s sdkService) Queue(name string) Queue {
	q := s.url.NewQueueURL(name)
	return sdkQueue{name: name, url: q, messages: q.NewMessagesURL()}
}

type sdkQueue struct {
	name     string
	url      azqueue.QueueURL
	messages azqueue.MessagesURL
}

func (q sdkQueue) Name() string { return q.name }

func (q sdkQueue) Create(ctx context.Context, metadata map[string]string) error {
	_, err := q.url.Create(ctx, metadata)
	if e, ok := err.(azqueue.StorageError); ok && e.ServiceCode() == azqueue.ServiceCodeQueueAlreadyExists {
		// 409: the queue exists with other metadata; whoever created it
		// first recorded the same topic and group.
		return nil
	}
	return convert("create", q.name, err)
}

func (q sdkQueue) SetMetadata(ctx context.Context, metadata map[string]string) error {
	_, err := q.url.SetMetadata(ctx, metadata)
	return convert("set metadata of", q.name, err)
}

func (q sdkQueue) ApproximateCount(ctx context.Context) (int64, error) {
	props, err := q.url.GetProperties(ctx)
	if err != nil {
		return 0, convert("get properties of", q.name, err)
	}
	return int64(props.ApproximateMessagesCount()), nil
}

func (q sdkQueue) DeleteQueue(ctx context.Context) error {
	_, err := q.url.Delete(ctx)
	return convert("delete", q.name, err)
}

func (q sdkQueue) Enqueue(ctx context.Context, text string, delay, ttl time.Duration) error {
	_, err := q.messages.Enqueue(ctx, text, WholeSeconds(delay), WholeSeconds(ttl))
	return convert("enqueue to", q.name, err)
}

func (q sdkQueue) Dequeue(ctx context.Context, max int, visibility time.Duration) ([]Message, error) {
	resp, err := q.messages.Dequeue(ctx, int32(max), WholeSeconds(visibility))
	if err != nil {
		return nil, convert("dequeue from", q.name, err)
	}
	n := resp.NumMessages()
	msgs := make([]Message, 0, n)
	for i := int32(0); i < n; i++ {
		m := resp.Message(i)
		msgs = append(msgs, Message{
			ID:            string(m.ID),
			Text:          m.Text,
			DequeueCount:  m.DequeueCount,
			InsertionTime: m.InsertionTime,
			Lease:         Lease{PopReceipt: string(m.PopReceipt), NextVisibleTime: m.NextVisibleTime},
		})
	}
	return msgs, nil
}

func (q sdkQueue) Update(ctx context.Context, id, popReceipt, text string, visibility time.Duration) (Lease, error) {
	resp, err := q.messages.NewMessageIDURL(azqueue.MessageID(id)).Update(ctx, azqueue.PopReceipt(popReceipt), WholeSeconds(visibility), text)
	if err != nil {
		return Lease{}, convert("update message in", q.name, err)
	}
	return Lease{PopReceipt: string(resp.PopReceipt), NextVisibleTime: resp.TimeNextVisible}, nil
}

func (q sdkQueue) Delete(ctx context.Context, id, popReceipt string) error {
	_, err := q.messages.NewMessageIDURL(azqueue.MessageID(id)).Delete(ctx, azqueue.PopReceipt(popReceipt))
	return convert("delete message from", q.name, err)
}

// WholeSeconds rounds a positive duration up to whole seconds, the unit of
// the service's visibility timeouts and time to live, as the queues send it.
// The SDK truncates instead, which would make a 1.5s delay 1s and a 0.9s one
// 0: earlier than asked. Zero and negative values (NeverExpire) pass
// unchanged.
func WholeSeconds(d time.Duration) time.Duration {
	if d <= 0 {
		return d
	}
	if rest := d % time.Second; rest != 0 {
		d += time.Second - rest
	}
	return d
}

// convert turns an SDK error into an *Error that keeps the status and the
// service code but drops the request dump (URL, headers) the SDK puts in its
// error text.
func convert(op, queue string, err error) error {
	if err == nil {
		return nil
	}
	e := &Error{Op: op, Queue: queue}
	var se azqueue.StorageError
	if errors.As(err, &se) {
		if resp := se.Response(); resp != nil {
			e.StatusCode = resp.StatusCode
			e.RetryAfter = parseRetryAfter(resp.Header.Get("Retry-After"), time.Now())
			e.Detail = resp.Header.Get(authDetailHeader)
		}
		e.Code = string(se.ServiceCode())
		return e
	}
	cause := pipeline.Cause(err)
	var ue *url.Error
	if errors.As(cause, &ue) {
		cause = ue.Err // the url.Error's text names the URL, which may carry a SAS
	}
	e.Err = cause
	return e
}

// authDetailHeader carries, on a refused request's response, the
// service's AuthenticationErrorDetail from the XML body to convert: the
// SDK's error parser loses it (it keeps the whitespace that follows each
// element in place of the element's text).
const authDetailHeader = "X-Poc-Authentication-Error-Detail"

// maxErrorBody bounds how much of a refused request's body is read; Azure's
// error bodies are a few hundred bytes.
const maxErrorBody = 16 << 10

// noteAuthenticationDetail copies the first line of the body's
// AuthenticationErrorDetail into authDetailHeader, bounded in length, and
// leaves the body as it was for the SDK.
func noteAuthenticationDetail(r *http.Response) {
	const open, end, maxLen = "<AuthenticationErrorDetail>", "</AuthenticationErrorDetail>", 200
	body, err := io.ReadAll(io.LimitReader(r.Body, maxErrorBody))
	r.Body.Close()
	r.Body = io.NopCloser(bytes.NewReader(body))
	if err != nil {
		return
	}
	text := string(body)
	i := strings.Index(text, open)
	if i < 0 {
		return
	}
	detail := text[i+len(open):]
	if j := strings.Index(detail, end); j >= 0 {
		detail = detail[:j]
	}
	detail = html.UnescapeString(detail)
	if j := strings.IndexAny(detail, "\r\n"); j >= 0 {
		detail = detail[:j]
	}
	detail = strings.TrimSpace(detail)
	if len(detail) > maxLen {
		detail = strings.ToValidUTF8(detail[:maxLen], "") + "…"
	}
	if detail != "" {
		r.Header.Set(authDetailHeader, detail)
	}
}

// parseRetryAfter reads a Retry-After header: a number of seconds, or an
// HTTP date (relative to now). Anything else, or a time past, is 0.
func parseRetryAfter(v string, now time.Time) time.Duration {
	if v == "" {
		return 0
	}
	if seconds, err := strconv.Atoi(v); err == nil {
		return max(0, time.Duration(seconds)*time.Second)
	}
	if at, err := http.ParseTime(v); err == nil {
		return max(0, at.Sub(now))
	}
	return 0
}
