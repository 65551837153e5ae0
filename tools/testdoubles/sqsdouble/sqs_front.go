package sqsdouble

import (
	"bytes"
	"context"
	"crypto/md5"
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"encoding/xml"
	"fmt"
	"io"
	"math/big"
	"net/http"
	"net/url"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode/utf8"
)

// sqsFront speaks the SQS JSON protocol that aws-sdk-go-v2 uses and keeps
// its messages in goaws, which speaks only the older query protocol. It
// mends what goaws v0.4.5 gets wrong or lacks, each as SQS documents it:
//
//   - the JSON protocol (goaws answers only form posts with XML);
//   - FIFO queues: goaws's group locks are never released by a
//     ChangeMessageVisibility to 0 and forget other groups, and it forgets a
//     deduplication id when the message is deleted; so goaws holds FIFO
//     queues as standard ones and this front deduplicates for five minutes,
//     assigns sequence numbers and reports group and deduplication ids;
//   - ApproximateReceiveCount (always 1 in goaws), SentTimestamp (the receive
//     time in goaws) and ApproximateFirstReceiveTimestamp;
//   - the redrive policy, which goaws applies one receive late and only on
//     its one-second sweep; here a receive that would exceed maxReceiveCount
//     moves the message to the dead-letter queue, as SQS does;
//   - message attributes and DelaySeconds in SendMessageBatch (goaws drops
//     them), by sending batch entries one by one;
//   - a delete with a stale receipt handle, which SQS answers with success;
//   - the 12-hour limit of a message's visibility, counted from the receive
//     its receipt handle came from;
//   - FIFO rules goaws does not check: a group id and a deduplication id
//     are required and a per-message DelaySeconds is refused;
//   - concurrency: goaws reads its queue map without a lock, so creating a
//     queue here never overlaps another call into goaws.
//
// Long polls are served here too, so that no goaws call holds its locks.
type sqsFront struct {
	goaws   string // goaws's base URL
	base    string // this front's base URL, which queue URLs name
	account string
	region  string
	client  *http.Client

	// mapMu is held for writing while goaws creates a queue and for reading
	// around every other goaws call.
	mapMu sync.RWMutex

	mu     sync.Mutex
	queues map[string]*frontQueue // by SQS name
	seq    int64
	epoch  *big.Int // 2^64 plus a time part: the shape of SQS's sequence numbers
}

// frontQueue is one queue and the bookkeeping goaws does not do.
type frontQueue struct {
	name       string
	goawsName  string
	arn        string
	fifo       bool
	visibility int
	attrs      map[string]string // as created
	maxReceive int               // 0: no redrive policy
	dlq        *frontQueue

	// lock serializes this queue's goaws calls with the maps below, so that
	// a message is never received before its bookkeeping exists.
	lock  sync.Mutex
	meta  map[string]*frontMessage // by goaws message id
	dedup map[string]dedupEntry    // by deduplication id

	wakeMu sync.Mutex
	wake   chan struct{} // closed at the next send
}

type frontMessage struct {
	seq          int64
	sent         time.Time
	receives     int
	firstReceive time.Time
	lastReceive  time.Time // a visibility timeout runs at most 12 hours from it
	group, dedup string
}

type dedupEntry struct {
	until     time.Time
	messageID string
	seq       int64
}

// dedupWindow is SQS's fixed deduplication interval.
const dedupWindow = 5 * time.Minute

func newSQSFront(goaws, base, account, region string) *sqsFront {
	epoch := new(big.Int).Lsh(big.NewInt(1), 64)
	epoch.Add(epoch, new(big.Int).Lsh(big.NewInt(time.Now().Unix()), 28))
	return &sqsFront{
		goaws: goaws, base: base, account: account, region: region,
		client: &http.Client{Timeout: 30 * time.Second},
		queues: map[string]*frontQueue{},
		epoch:  epoch,
	}
}

// apiError is an SQS error as the JSON protocol carries it.
type apiError struct {
	code  string // the shape name, e.g. QueueDoesNotExist
	query string // the query protocol's code, which SQS also sends
	msg   string
}

func (e *apiError) Error() string { return e.code + ": " + e.msg }

func invalidParameter(format string, args ...any) *apiError {
	return &apiError{code: "InvalidParameterValue", query: "InvalidParameterValue", msg: fmt.Sprintf(format, args...)}
}

func noQueue() *apiError {
	return &apiError{code: "QueueDoesNotExist", query: "AWS.SimpleQueueService.NonExistentQueue", msg: "The specified queue does not exist."}
}

func (f *sqsFront) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	op, ok := strings.CutPrefix(r.Header.Get("X-Amz-Target"), "AmazonSQS.")
	body, err := io.ReadAll(r.Body)
	if !ok || err != nil {
		writeFrontError(w, &apiError{code: "InvalidAction", query: "InvalidAction", msg: "only the JSON protocol is served"})
		return
	}
	ops := map[string]func(context.Context, []byte) (any, error){
		"CreateQueue":             f.createQueue,
		"GetQueueUrl":             f.getQueueURL,
		"GetQueueAttributes":      f.getQueueAttributes,
		"SendMessage":             f.sendMessage,
		"SendMessageBatch":        f.sendMessageBatch,
		"ReceiveMessage":          f.receiveMessage,
		"DeleteMessage":           f.deleteMessage,
		"ChangeMessageVisibility": f.changeMessageVisibility,
	}
	fn := ops[op]
	if fn == nil {
		writeFrontError(w, &apiError{code: "UnsupportedOperation", query: "AWS.SimpleQueueService.UnsupportedOperation", msg: op + " is not served by the test double"})
		return
	}
	out, err := fn(r.Context(), body)
	if err != nil {
		ae, ok := err.(*apiError)
		if !ok {
			w.Header().Set("Content-Type", "application/x-amz-json-1.0")
			w.WriteHeader(http.StatusInternalServerError)
			json.NewEncoder(w).Encode(map[string]string{"__type": "com.amazonaws.sqs#InternalError", "message": err.Error()})
			return
		}
		writeFrontError(w, ae)
		return
	}
	w.Header().Set("Content-Type", "application/x-amz-json-1.0")
	json.NewEncoder(w).Encode(out)
}

func writeFrontError(w http.ResponseWriter, e *apiError) {
	w.Header().Set("Content-Type", "application/x-amz-json-1.0")
	if e.query != "" {
		w.Header().Set("X-Amzn-Query-Error", e.query+";Sender")
	}
	w.WriteHeader(http.StatusBadRequest)
	json.NewEncoder(w).Encode(map[string]string{"__type": "com.amazonaws.sqs#" + e.code, "message": e.msg})
}

// goawsCall posts one query-protocol action to goaws and decodes its XML
// answer into out; a goaws error comes back as its code.
func (f *sqsFront) goawsCall(ctx context.Context, form url.Values, out any) (string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, f.goaws+"/", strings.NewReader(form.Encode()))
	if err != nil {
		return "", err
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	resp, err := f.client.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		return "", err
	}
	if resp.StatusCode != http.StatusOK {
		var e struct {
			Code    string `xml:"Error>Code"`
			Type    string `xml:"Error>Type"`
			Message string `xml:"Error>Message"`
		}
		if xml.Unmarshal(raw, &e) != nil || e.Type == "" {
			return "", fmt.Errorf("goaws %s: %s: %s", form.Get("Action"), resp.Status, raw)
		}
		return e.Type, nil
	}
	if out != nil {
		if err := xml.Unmarshal(raw, out); err != nil {
			return "", fmt.Errorf("goaws %s: %w: %s", form.Get("Action"), err, raw)
		}
	}
	return "", nil
}

func (f *sqsFront) goawsURL(q *frontQueue) string {
	return f.goaws + "/" + f.account + "/" + q.goawsName
}

func (f *sqsFront) queueURL(name string) string { return f.base + "/" + f.account + "/" + name }

// queueFor finds the queue a QueueUrl names by its last path segment, as
// SQS does for the account it is called with.
// queueRef is the QueueUrl that names the queue of an action on one.
type queueRef struct{ QueueUrl string }

func (r queueRef) queueURL() string { return r.QueueUrl }

// decodeOnQueue decodes the JSON input of an action on a queue into in, a
// struct that embeds queueRef, and returns the queue it names. Input that
// does not decode is an InvalidParameterValue, as SQS answers it.
func (f *sqsFront) decodeOnQueue(body []byte, in interface{ queueURL() string }) (*frontQueue, error) {
	if err := json.Unmarshal(body, in); err != nil {
		return nil, invalidParameter("%v", err)
	}
	return f.queueFor(in.queueURL())
}

func (f *sqsFront) queueFor(queueURL string) (*frontQueue, error) {
	name := queueURL[strings.LastIndex(queueURL, "/")+1:]
	f.mu.Lock()
	defer f.mu.Unlock()
	q := f.queues[name]
	if q == nil {
		return nil, noQueue()
	}
	return q, nil
}

var queueNamePattern = regexp.MustCompile(`^[A-Za-z0-9_-]{1,80}$`)

func (f *sqsFront) createQueue(ctx context.Context, body []byte) (any, error) {
	var in struct {
		QueueName  string
		Attributes map[string]string
	}
	if err := json.Unmarshal(body, &in); err != nil {
		return nil, invalidParameter("%v", err)
	}
	fifo := in.Attributes["FifoQueue"] == "true"
	base, hasSuffix := strings.CutSuffix(in.QueueName, ".fifo")
	if !queueNamePattern.MatchString(base) || len(in.QueueName) > 80 {
		return nil, invalidParameter("Can only include alphanumeric characters, hyphens, or underscores. 1 to 80 in length")
	}
	if fifo != hasSuffix {
		return nil, invalidParameter("The name of a FIFO queue must end with the .fifo suffix, and only a FIFO queue may have it")
	}
	if in.Attributes["ContentBasedDeduplication"] == "true" && !fifo {
		return nil, invalidParameter("ContentBasedDeduplication is only for FIFO queues")
	}
	visibility := 30
	if v, ok := in.Attributes["VisibilityTimeout"]; ok {
		n, err := strconv.Atoi(v)
		if err != nil || n < 0 || n > 43200 {
			return nil, invalidParameter("Invalid value for the parameter VisibilityTimeout")
		}
		visibility = n
	}

	f.mu.Lock()
	if q := f.queues[in.QueueName]; q != nil {
		f.mu.Unlock()
		for k, v := range in.Attributes {
			if q.attrs[k] != v {
				return nil, &apiError{code: "QueueNameExists", query: "QueueAlreadyExists", msg: "A queue already exists with the same name and a different value for attribute " + k}
			}
		}
		return map[string]string{"QueueUrl": f.queueURL(q.name)}, nil
	}
	f.mu.Unlock()

	q := &frontQueue{
		name: in.QueueName, goawsName: in.QueueName, fifo: fifo, visibility: visibility,
		arn:   fmt.Sprintf("arn:aws:sqs:%s:%s:%s", f.region, f.account, in.QueueName),
		attrs: in.Attributes, meta: map[string]*frontMessage{}, dedup: map[string]dedupEntry{},
	}
	if q.attrs == nil {
		q.attrs = map[string]string{}
	}
	if fifo {
		// goaws would apply its own FIFO handling to a .fifo name; '~'
		// cannot appear in an SQS name, so no other queue can collide.
		q.goawsName = base + "~fifo"
	}
	if policy, ok := in.Attributes["RedrivePolicy"]; ok {
		var rp struct {
			DeadLetterTargetArn string
			MaxReceiveCount     json.Number
		}
		if err := json.Unmarshal([]byte(policy), &rp); err != nil {
			return nil, &apiError{code: "InvalidAttributeValue", query: "InvalidAttributeValue", msg: "Invalid value for the parameter RedrivePolicy"}
		}
		n, err := strconv.Atoi(rp.MaxReceiveCount.String())
		if err != nil || n < 1 || n > 1000 {
			return nil, &apiError{code: "InvalidAttributeValue", query: "InvalidAttributeValue", msg: "maxReceiveCount must be 1 to 1000"}
		}
		target := rp.DeadLetterTargetArn[strings.LastIndex(rp.DeadLetterTargetArn, ":")+1:]
		f.mu.Lock()
		dlq := f.queues[target]
		f.mu.Unlock()
		if dlq == nil || dlq.fifo != fifo || target == q.name {
			return nil, invalidParameter("Value %s for parameter RedrivePolicy is invalid. Reason: Dead letter target does not exist or is of another queue type.", policy)
		}
		q.dlq, q.maxReceive = dlq, n
	}

	f.mapMu.Lock()
	code, err := f.goawsCall(ctx, url.Values{
		"Action": {"CreateQueue"}, "QueueName": {q.goawsName},
		"Attribute.1.Name": {"VisibilityTimeout"}, "Attribute.1.Value": {strconv.Itoa(max(visibility, 1))},
	}, nil)
	f.mapMu.Unlock()
	if err != nil {
		return nil, err
	}
	if code != "" {
		return nil, invalidParameter("goaws: %s", code)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if existing := f.queues[q.name]; existing != nil {
		return map[string]string{"QueueUrl": f.queueURL(existing.name)}, nil
	}
	f.queues[q.name] = q
	return map[string]string{"QueueUrl": f.queueURL(q.name)}, nil
}

func (f *sqsFront) getQueueURL(_ context.Context, body []byte) (any, error) {
	var in struct{ QueueName string }
	if err := json.Unmarshal(body, &in); err != nil {
		return nil, invalidParameter("%v", err)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.queues[in.QueueName] == nil {
		return nil, noQueue()
	}
	return map[string]string{"QueueUrl": f.queueURL(in.QueueName)}, nil
}

func (f *sqsFront) getQueueAttributes(ctx context.Context, body []byte) (any, error) {
	var in struct {
		queueRef
		AttributeNames []string
	}
	q, err := f.decodeOnQueue(body, &in)
	if err != nil {
		return nil, err
	}
	all := map[string]string{
		"QueueArn":          q.arn,
		"VisibilityTimeout": strconv.Itoa(q.visibility),
		"DelaySeconds":      "0",
	}
	for k, v := range q.attrs {
		if _, ok := all[k]; !ok {
			all[k] = v
		}
	}
	want := map[string]bool{}
	for _, n := range in.AttributeNames {
		want[n] = true
	}
	if want["All"] || want["ApproximateNumberOfMessages"] || want["ApproximateNumberOfMessagesNotVisible"] {
		var out struct {
			Attrs []struct{ Name, Value string } `xml:"GetQueueAttributesResult>Attribute"`
		}
		f.mapMu.RLock()
		_, err := f.goawsCall(ctx, url.Values{"Action": {"GetQueueAttributes"}, "QueueUrl": {f.goawsURL(q)}, "AttributeName.1": {"All"}}, &out)
		f.mapMu.RUnlock()
		if err != nil {
			return nil, err
		}
		for _, a := range out.Attrs {
			if strings.HasPrefix(a.Name, "ApproximateNumberOfMessages") {
				all[a.Name] = a.Value
			}
		}
	}
	got := map[string]string{}
	for k, v := range all {
		if want["All"] || want[k] {
			got[k] = v
		}
	}
	return map[string]any{"Attributes": got}, nil
}

// attrValue is a message attribute as the JSON protocol carries it.
type attrValue struct {
	DataType    string
	StringValue *string `json:",omitempty"`
	BinaryValue []byte  `json:",omitempty"`
}

// sendInput is a SendMessage request or one SendMessageBatch entry.
type sendInput struct {
	Id                     string // batch entries only
	MessageBody            string
	DelaySeconds           *int
	MessageAttributes      map[string]attrValue
	MessageDeduplicationId string
	MessageGroupId         string
}

type sendOutput struct {
	Id                     string `json:",omitempty"`
	MessageId              string
	MD5OfMessageBody       string
	MD5OfMessageAttributes string `json:",omitempty"`
	SequenceNumber         string `json:",omitempty"`
}

func (f *sqsFront) sendMessage(ctx context.Context, body []byte) (any, error) {
	var in struct {
		queueRef
		sendInput
	}
	q, err := f.decodeOnQueue(body, &in)
	if err != nil {
		return nil, err
	}
	return f.send(ctx, q, in.sendInput)
}

func (f *sqsFront) sendMessageBatch(ctx context.Context, body []byte) (any, error) {
	var in struct {
		queueRef
		Entries []sendInput
	}
	q, err := f.decodeOnQueue(body, &in)
	if err != nil {
		return nil, err
	}
	switch {
	case len(in.Entries) == 0:
		return nil, &apiError{code: "EmptyBatchRequest", query: "AWS.SimpleQueueService.EmptyBatchRequest", msg: "There should be at least one SendMessageBatchRequestEntry in the request."}
	case len(in.Entries) > 10:
		return nil, &apiError{code: "TooManyEntriesInBatchRequest", query: "AWS.SimpleQueueService.TooManyEntriesInBatchRequest", msg: "Maximum number of entries per request are 10."}
	}
	ids, total := map[string]bool{}, 0
	for _, e := range in.Entries {
		if ids[e.Id] {
			return nil, &apiError{code: "BatchEntryIdsNotDistinct", query: "AWS.SimpleQueueService.BatchEntryIdsNotDistinct", msg: "Id " + e.Id + " repeated."}
		}
		ids[e.Id] = true
		total += messageBytes(e)
	}
	if total > 256*1024 {
		return nil, &apiError{code: "BatchRequestTooLong", query: "AWS.SimpleQueueService.BatchRequestTooLong", msg: "Batch requests cannot be longer than 262144 bytes."}
	}
	type failed struct {
		Id          string
		SenderFault bool
		Code        string
		Message     string
	}
	out := struct {
		Successful []sendOutput
		Failed     []failed
	}{Successful: []sendOutput{}, Failed: []failed{}}
	for _, e := range in.Entries {
		res, err := f.send(ctx, q, e)
		if ae, ok := err.(*apiError); ok {
			out.Failed = append(out.Failed, failed{Id: e.Id, SenderFault: true, Code: ae.code, Message: ae.msg})
			continue
		}
		if err != nil {
			return nil, err
		}
		res.Id = e.Id
		out.Successful = append(out.Successful, *res)
	}
	return out, nil
}

func messageBytes(in sendInput) int {
	n := len(in.MessageBody)
	for k, v := range in.MessageAttributes {
		n += len(k) + len(v.DataType) + len(deref(v.StringValue)) + len(v.BinaryValue)
	}
	return n
}

func deref(s *string) string {
	if s == nil {
		return ""
	}
	return *s
}

// validBody holds a body to the characters SQS accepts.
func validBody(s string) bool {
	if s == "" || !utf8.ValidString(s) {
		return false
	}
	for _, r := range s {
		ok := r == 0x9 || r == 0xA || r == 0xD || (r >= 0x20 && r <= 0xD7FF) || (r >= 0xE000 && r <= 0xFFFD) || r >= 0x10000
		if !ok {
			return false
		}
	}
	return true
}

func (f *sqsFront) send(ctx context.Context, q *frontQueue, in sendInput) (*sendOutput, error) {
	if !validBody(in.MessageBody) {
		return nil, &apiError{code: "InvalidMessageContents", query: "InvalidMessageContents", msg: "Invalid characters found in the message body"}
	}
	if messageBytes(in) > 256*1024 {
		return nil, invalidParameter("One or more parameters are invalid. Reason: Message must be shorter than 262144 bytes.")
	}
	delay := 0
	if in.DelaySeconds != nil {
		delay = *in.DelaySeconds
	}
	if q.fifo {
		switch {
		case in.MessageGroupId == "":
			return nil, &apiError{code: "MissingParameter", query: "MissingParameter", msg: "The request must contain the parameter MessageGroupId."}
		case in.MessageDeduplicationId == "" && q.attrs["ContentBasedDeduplication"] != "true":
			return nil, invalidParameter("The queue should either have ContentBasedDeduplication enabled or MessageDeduplicationId provided explicitly")
		case in.DelaySeconds != nil:
			return nil, invalidParameter("Value %d for parameter DelaySeconds is invalid. Reason: The request include parameter that is not valid for this queue type.", delay)
		}
	} else if in.MessageDeduplicationId != "" {
		return nil, invalidParameter("The request include parameter MessageDeduplicationId that is not valid for this queue type")
	}
	if delay < 0 || delay > 900 {
		return nil, invalidParameter("Value %d for parameter DelaySeconds is invalid. Reason: must be between 0 and 900, if provided.", delay)
	}
	md5Attrs := attributesMD5(in.MessageAttributes)
	q.lock.Lock()
	defer q.lock.Unlock()
	now := time.Now()
	if q.fifo {
		if d, ok := q.dedup[in.MessageDeduplicationId]; ok && now.Before(d.until) {
			return &sendOutput{MessageId: d.messageID, MD5OfMessageBody: md5Hex(in.MessageBody), MD5OfMessageAttributes: md5Attrs, SequenceNumber: f.sequence(d.seq)}, nil
		}
	}
	form := url.Values{"Action": {"SendMessage"}, "QueueUrl": {f.goawsURL(q)}, "MessageBody": {in.MessageBody}}
	if delay > 0 {
		form.Set("DelaySeconds", strconv.Itoa(delay))
	}
	names := make([]string, 0, len(in.MessageAttributes))
	for k := range in.MessageAttributes {
		names = append(names, k)
	}
	sort.Strings(names)
	for i, k := range names {
		v := in.MessageAttributes[k]
		p := fmt.Sprintf("MessageAttribute.%d.", i+1)
		form.Set(p+"Name", k)
		form.Set(p+"Value.DataType", v.DataType)
		if v.BinaryValue != nil {
			form.Set(p+"Value.BinaryValue", base64.StdEncoding.EncodeToString(v.BinaryValue))
		} else {
			form.Set(p+"Value.StringValue", deref(v.StringValue))
		}
	}
	var out struct {
		MessageID string `xml:"SendMessageResult>MessageId"`
	}
	f.mapMu.RLock()
	code, err := f.goawsCall(ctx, form, &out)
	f.mapMu.RUnlock()
	if err != nil {
		return nil, err
	}
	if code != "" {
		return nil, invalidParameter("goaws: %s", code)
	}
	m := &frontMessage{seq: f.nextSeq(), sent: now, group: in.MessageGroupId, dedup: in.MessageDeduplicationId}
	q.meta[out.MessageID] = m
	res := &sendOutput{MessageId: out.MessageID, MD5OfMessageBody: md5Hex(in.MessageBody), MD5OfMessageAttributes: md5Attrs}
	if q.fifo {
		q.dedup[in.MessageDeduplicationId] = dedupEntry{until: now.Add(dedupWindow), messageID: out.MessageID, seq: m.seq}
		for id, d := range q.dedup {
			if !now.Before(d.until) {
				delete(q.dedup, id)
			}
		}
		res.SequenceNumber = f.sequence(m.seq)
	}
	q.signal()
	return res, nil
}

func (f *sqsFront) nextSeq() int64 {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.seq++
	return f.seq
}

func (f *sqsFront) sequence(n int64) string {
	return new(big.Int).Add(f.epoch, big.NewInt(n)).String()
}

func (q *frontQueue) waiter() <-chan struct{} {
	q.wakeMu.Lock()
	defer q.wakeMu.Unlock()
	if q.wake == nil {
		q.wake = make(chan struct{})
	}
	return q.wake
}

func (q *frontQueue) signal() {
	q.wakeMu.Lock()
	defer q.wakeMu.Unlock()
	if q.wake != nil {
		close(q.wake)
		q.wake = nil
	}
}

// goawsMessage is a message of a goaws ReceiveMessage answer.
type goawsMessage struct {
	MessageID     string `xml:"MessageId"`
	ReceiptHandle string
	Body          string
	Attributes    []struct {
		Name  string
		Value struct {
			DataType    string
			StringValue *string
			BinaryValue *string
		}
	} `xml:"MessageAttribute"`
}

type receivedMessage struct {
	MessageId              string
	ReceiptHandle          string
	MD5OfBody              string
	Body                   string
	Attributes             map[string]string    `json:",omitempty"`
	MD5OfMessageAttributes string               `json:",omitempty"`
	MessageAttributes      map[string]attrValue `json:",omitempty"`
}

func (f *sqsFront) receiveMessage(ctx context.Context, body []byte) (any, error) {
	var in struct {
		queueRef
		MaxNumberOfMessages         *int
		WaitTimeSeconds             *int
		VisibilityTimeout           *int
		AttributeNames              []string
		MessageSystemAttributeNames []string
		MessageAttributeNames       []string
	}
	q, err := f.decodeOnQueue(body, &in)
	if err != nil {
		return nil, err
	}
	n, wait := 1, 0
	if in.MaxNumberOfMessages != nil {
		n = *in.MaxNumberOfMessages
	}
	if in.WaitTimeSeconds != nil {
		wait = *in.WaitTimeSeconds
	}
	if n < 1 || n > 10 {
		return nil, invalidParameter("Value %d for parameter MaxNumberOfMessages is invalid. Reason: Must be between 1 and 10, if provided.", n)
	}
	if wait < 0 || wait > 20 {
		return nil, invalidParameter("Value %d for parameter WaitTimeSeconds is invalid. Reason: Must be >= 0 and <= 20, if provided.", wait)
	}
	systemNames := append(append([]string(nil), in.AttributeNames...), in.MessageSystemAttributeNames...)
	deadline := time.Now().Add(time.Duration(wait) * time.Second)
	for {
		woken := q.waiter()
		got, err := f.tryReceive(ctx, q, n, systemNames, in.MessageAttributeNames)
		if err != nil {
			return nil, err
		}
		if len(got) > 0 || !time.Now().Before(deadline) {
			if in.VisibilityTimeout != nil {
				for _, m := range got {
					f.changeVisibility(ctx, q, m.ReceiptHandle, *in.VisibilityTimeout)
				}
			}
			return map[string]any{"Messages": got}, nil
		}
		// Sends wake the poll at once; a lock or delay running out is
		// noticed on the next look.
		t := time.NewTimer(min(50*time.Millisecond, time.Until(deadline)))
		select {
		case <-ctx.Done():
			t.Stop()
			return nil, ctx.Err()
		case <-woken:
		case <-t.C:
		}
		t.Stop()
	}
}

func (f *sqsFront) tryReceive(ctx context.Context, q *frontQueue, n int, systemNames, attrNames []string) ([]receivedMessage, error) {
	q.lock.Lock()
	defer q.lock.Unlock()
	var out struct {
		Messages []goawsMessage `xml:"ReceiveMessageResult>Message"`
	}
	f.mapMu.RLock()
	code, err := f.goawsCall(ctx, url.Values{
		"Action": {"ReceiveMessage"}, "QueueUrl": {f.goawsURL(q)}, "MaxNumberOfMessages": {strconv.Itoa(n)},
		"MessageAttributeName.1": {"All"},
	}, &out)
	f.mapMu.RUnlock()
	if err != nil {
		return nil, err
	}
	if code != "" {
		return nil, noQueue()
	}
	now := time.Now()
	got := []receivedMessage{}
	for _, gm := range out.Messages {
		attrs := map[string]attrValue{}
		for _, a := range gm.Attributes {
			v := attrValue{DataType: a.Value.DataType, StringValue: a.Value.StringValue}
			if a.Value.BinaryValue != nil {
				v.StringValue = nil
				v.BinaryValue, _ = base64.StdEncoding.DecodeString(*a.Value.BinaryValue)
			}
			attrs[a.Name] = v
		}
		m := q.meta[gm.MessageID]
		if m == nil {
			m = &frontMessage{seq: f.nextSeq(), sent: now}
			q.meta[gm.MessageID] = m
		}
		m.receives++
		m.lastReceive = now
		if m.firstReceive.IsZero() {
			m.firstReceive = now
		}
		if q.dlq != nil && m.receives > q.maxReceive {
			if err := f.redrive(ctx, q, gm, attrs, m); err != nil {
				return nil, err
			}
			continue
		}
		system := map[string]string{
			"SenderId":                         f.account,
			"SentTimestamp":                    strconv.FormatInt(m.sent.UnixMilli(), 10),
			"ApproximateReceiveCount":          strconv.Itoa(m.receives),
			"ApproximateFirstReceiveTimestamp": strconv.FormatInt(m.firstReceive.UnixMilli(), 10),
		}
		if q.fifo {
			system["MessageGroupId"] = m.group
			system["MessageDeduplicationId"] = m.dedup
			system["SequenceNumber"] = f.sequence(m.seq)
		}
		r := receivedMessage{
			MessageId: gm.MessageID, ReceiptHandle: gm.ReceiptHandle, Body: gm.Body, MD5OfBody: md5Hex(gm.Body),
			Attributes: pick(system, systemNames), MessageAttributes: pick(attrs, attrNames),
		}
		if len(r.MessageAttributes) > 0 {
			r.MD5OfMessageAttributes = attributesMD5(r.MessageAttributes)
		}
		got = append(got, r)
	}
	return got, nil
}

// redrive moves a message that has been received too often to the
// dead-letter queue, keeping its body, attributes and ids; q.lock is held,
// and a dead-letter queue has no redrive policy of its own to lock another.
func (f *sqsFront) redrive(ctx context.Context, q *frontQueue, gm goawsMessage, attrs map[string]attrValue, m *frontMessage) error {
	dlq := q.dlq
	in := sendInput{MessageBody: gm.Body, MessageAttributes: attrs, MessageGroupId: m.group, MessageDeduplicationId: m.dedup}
	dlq.lock.Lock()
	// The move keeps the message even if the dead-letter queue saw its
	// deduplication id lately: drop the memory of it for this send.
	delete(dlq.dedup, m.dedup)
	dlq.lock.Unlock()
	if _, err := f.send(ctx, dlq, in); err != nil {
		return fmt.Errorf("move %s to %s: %w", gm.MessageID, dlq.name, err)
	}
	f.mapMu.RLock()
	_, err := f.goawsCall(ctx, url.Values{"Action": {"DeleteMessage"}, "QueueUrl": {f.goawsURL(q)}, "ReceiptHandle": {gm.ReceiptHandle}}, nil)
	f.mapMu.RUnlock()
	delete(q.meta, gm.MessageID)
	return err
}

// pick filters named values the way ReceiveMessage's name lists do: "All"
// or ".*" for every one, "prefix.*" for a prefix, otherwise exact names.
func pick[V any](all map[string]V, names []string) map[string]V {
	out := map[string]V{}
	for k, v := range all {
		for _, n := range names {
			prefix, wild := strings.CutSuffix(n, ".*")
			if n == "All" || n == k || (wild && strings.HasPrefix(k, prefix)) {
				out[k] = v
				break
			}
		}
	}
	return out
}

func (f *sqsFront) deleteMessage(ctx context.Context, body []byte) (any, error) {
	var in struct {
		queueRef
		ReceiptHandle string
	}
	q, err := f.decodeOnQueue(body, &in)
	if err != nil {
		return nil, err
	}
	msgID, _, wellFormed := strings.Cut(in.ReceiptHandle, "#")
	if !wellFormed {
		return nil, &apiError{code: "ReceiptHandleIsInvalid", query: "ReceiptHandleIsInvalid", msg: "The input receipt handle is invalid."}
	}
	q.lock.Lock()
	defer q.lock.Unlock()
	f.mapMu.RLock()
	code, err := f.goawsCall(ctx, url.Values{"Action": {"DeleteMessage"}, "QueueUrl": {f.goawsURL(q)}, "ReceiptHandle": {in.ReceiptHandle}}, nil)
	f.mapMu.RUnlock()
	if err != nil {
		return nil, err
	}
	if code == "" {
		delete(q.meta, msgID)
	}
	// SQS answers a stale receipt handle with success and keeps the
	// message: "otherwise, the request succeeds, but the message will not be
	// deleted".
	return struct{}{}, nil
}

func (f *sqsFront) changeMessageVisibility(ctx context.Context, body []byte) (any, error) {
	var in struct {
		queueRef
		ReceiptHandle     string
		VisibilityTimeout int
	}
	q, err := f.decodeOnQueue(body, &in)
	if err != nil {
		return nil, err
	}
	if in.VisibilityTimeout < 0 || in.VisibilityTimeout > 43200 {
		return nil, invalidParameter("Value %d for parameter VisibilityTimeout is invalid. Reason: must be between 0 and 43200.", in.VisibilityTimeout)
	}
	// SQS counts the limit from the receive the handle came from: the time
	// since then and the new timeout together may not pass 12 hours.
	msgID, _, _ := strings.Cut(in.ReceiptHandle, "#")
	q.lock.Lock()
	m := q.meta[msgID]
	q.lock.Unlock()
	if m != nil && !m.lastReceive.IsZero() && time.Since(m.lastReceive)+time.Duration(in.VisibilityTimeout)*time.Second > 43200*time.Second {
		return nil, invalidParameter("Value %d for parameter VisibilityTimeout is invalid. Reason: Total VisibilityTimeout for the message is beyond the limit [43200 seconds]", in.VisibilityTimeout)
	}
	if err := f.changeVisibility(ctx, q, in.ReceiptHandle, in.VisibilityTimeout); err != nil {
		return nil, err
	}
	return struct{}{}, nil
}

func (f *sqsFront) changeVisibility(ctx context.Context, q *frontQueue, handle string, secs int) error {
	q.lock.Lock()
	defer q.lock.Unlock()
	f.mapMu.RLock()
	code, err := f.goawsCall(ctx, url.Values{
		"Action": {"ChangeMessageVisibility"}, "QueueUrl": {f.goawsURL(q)},
		"ReceiptHandle": {handle}, "VisibilityTimeout": {strconv.Itoa(secs)},
	}, nil)
	f.mapMu.RUnlock()
	if err != nil {
		return err
	}
	if code != "" {
		return &apiError{code: "MessageNotInflight", query: "AWS.SimpleQueueService.MessageNotInflight", msg: "The message referred to isn't in flight."}
	}
	if secs == 0 {
		q.signal()
	}
	return nil
}

func md5Hex(s string) string {
	sum := md5.Sum([]byte(s))
	return hex.EncodeToString(sum[:])
}

// attributesMD5 is SQS's digest of message attributes: each, in name order,
// as length-prefixed name and data type, a transport byte and the
// length-prefixed value.
func attributesMD5(attrs map[string]attrValue) string {
	if len(attrs) == 0 {
		return ""
	}
	names := make([]string, 0, len(attrs))
	for k := range attrs {
		names = append(names, k)
	}
	sort.Strings(names)
	var buf bytes.Buffer
	put := func(b []byte) {
		var n [4]byte
		binary.BigEndian.PutUint32(n[:], uint32(len(b)))
		buf.Write(n[:])
		buf.Write(b)
	}
	for _, k := range names {
		v := attrs[k]
		put([]byte(k))
		put([]byte(v.DataType))
		if v.BinaryValue != nil {
			buf.WriteByte(2)
			put(v.BinaryValue)
		} else {
			buf.WriteByte(1)
			put([]byte(deref(v.StringValue)))
		}
	}
	sum := md5.Sum(buf.Bytes())
	return hex.EncodeToString(sum[:])
}
