package wire_test

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/fabrikam/dronedelivery/shared/domain"
	"github.com/fabrikam/dronedelivery/shared/wire"
)

func TestParseNotifyMe(t *testing.T) {
	t.Parallel()
	r, err := wire.ParseNotifyMe([]byte(`{"emailAddress":"ana@example.com","sms":"+14255550123"}`))
	require.NoError(t, err)
	assert.Equal(t, wire.NotifyMe{EmailAddress: "ana@example.com", SMS: "+14255550123"}, *r)
	r, err = wire.ParseNotifyMe([]byte(`{"sms":"+14255550123","emailAddress":""}`))
	require.NoError(t, err)
	assert.Equal(t, wire.NotifyMe{SMS: "+14255550123"}, *r, "an empty address is no address")
	for body, field := range map[string]string{
		`{}`:                                   "emailAddress",
		`{"emailAddress":"","sms":""}`:         "emailAddress",
		`{"emailAddress":"Ana <a@b.example>"}`: "emailAddress",
		`{"emailAddress":"a@b"}`:               "emailAddress",
		`{"sms":"+1 425 555 0123"}`:            "sms",
		`{"sms":"004214255550123"}`:            "sms",
		`{"sms":42}`:                           "sms",
		`{"email":"a@b.example"}`:              "email",
	} {
		_, err := wire.ParseNotifyMe([]byte(body))
		require.Error(t, err, body)
		assert.Equal(t, field, domain.ErrorField(err), body)
	}
}

func TestParseCustomerMessageEnvelope(t *testing.T) {
	t.Parallel()
	e, err := wire.ParseEnvelope([]byte(`{"operation":"customer-message","deliveryId":"d-1","correlationId":"c","notificationId":"d-1:n1","subscriptionId":"abc123","channel":"sms","attempt":1}`))
	require.NoError(t, err)
	assert.Equal(t, wire.Envelope{Operation: wire.OpCustomerMessage, DeliveryID: "d-1", CorrelationID: "c", NotificationID: "d-1:n1",
		SubscriptionID: "abc123", Channel: domain.ChannelSMS, Attempt: 1}, *e)
	for _, bad := range []string{
		`{"operation":"customer-message","deliveryId":"d-1","correlationId":"c","subscriptionId":"abc","channel":"sms"}`,                           // no notification
		`{"operation":"customer-message","deliveryId":"d-1","correlationId":"c","notificationId":"d-1:n1","channel":"sms"}`,                        // no subscription
		`{"operation":"customer-message","deliveryId":"d-1","correlationId":"c","notificationId":"d-1:n1","subscriptionId":"abc","channel":"fax"}`, // no such channel
		`{"operation":"customer-message","deliveryId":"d-1","correlationId":"c","notificationId":"d-1:n1","subscriptionId":"a/b","channel":"sms"}`,
		`{"operation":"notify","deliveryId":"d-1","correlationId":"c","notificationId":"d-1:n1","subscriptionId":"abc"}`, // only for customer-message
	} {
		_, err := wire.ParseEnvelope([]byte(bad))
		assert.True(t, domain.IsPermanent(err), bad)
	}
}
