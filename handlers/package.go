package handlers

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/fabrikam/dronedelivery/shared/domain"
	"github.com/fabrikam/dronedelivery/shared/ports"
	"github.com/fabrikam/dronedelivery/shared/topology"
)

// UpdatePackage creates or updates the package record of a delivery whose
// drone is assigned, and hands the delivery to the ETA step. Package ids
// are scoped to the business (domain.PackageKey): another business using
// the same id has a record of its own. A package travels on one delivery
// at a time: the record moves to this delivery only from one that has
// ended (ingest refuses the rest, and this catches two requests that
// raced past it). A record that cannot be taken (one on another delivery
// that has not ended, or one naming another owner under this key, which
// only a corrupted store holds) fails the delivery and releases its drone
// rather than leave it Created with the drone booked.
func (h *Handlers) UpdatePackage(ctx context.Context, msg *ports.Delivered) ([]ports.Message, error) {
	ctx, env, d, err := h.loadEnvelope(ctx, msg)
	if err != nil {
		return nil, err
	}
	if d.Stage.Terminal() || env.Generation != d.Generation {
		return nil, nil
	}
	if d.DroneAssignedAt == nil {
		return nil, &domain.Permanent{Err: fmt.Errorf("delivery %s has no drone assigned", d.ID)}
	}
	if d.PackageRecordedAt != nil {
		return []ports.Message{nextMessage(d, topology.QueuePackageUpdated, stepPackaged)}, nil
	}

	now := h.clock.Now()
	info := d.Request.PackageInfo
	key := domain.PackageKey(d.OwnerID, info.PackageID)
	_, err = h.st(ctx).Packages.Upsert(ctx, key, func(cur *domain.Package) (*domain.Package, error) {
		if cur == nil {
			// Booked with the delivery when it was accepted (a package
			// named after it has had no record until now).
			return &domain.Package{ID: key, PackageID: info.PackageID, OwnerID: d.OwnerID, DeliveryID: d.ID,
				Size: info.Size, Weight: info.Weight, Tag: info.Tag, Status: packageScheduled, CreatedAt: d.CreatedAt, UpdatedAt: now}, nil
		}
		if cur.OwnerID != d.OwnerID {
			return nil, errForeignPackage
		}
		if cur.DeliveryID == d.ID && cur.Size == info.Size && cur.Weight == info.Weight && cur.Tag == info.Tag && cur.Status == packageScheduled {
			return nil, ports.ErrSkip
		}
		if cur.DeliveryID != d.ID {
			holder, err := h.packageHolder(ctx, cur, d.ID)
			if err != nil {
				return nil, err
			}
			if holder != "" {
				return nil, &packageTaken{holder: holder}
			}
		}
		cur.DeliveryID, cur.Size, cur.Weight, cur.Tag, cur.Status, cur.UpdatedAt = d.ID, info.Size, info.Weight, info.Tag, packageScheduled, now
		return cur, nil
	})
	if errors.Is(err, errForeignPackage) {
		return h.fail(ctx, d.ID, fmt.Sprintf("package %s could not be recorded", info.PackageID))
	}
	if taken := (*packageTaken)(nil); errors.As(err, &taken) {
		return h.fail(ctx, d.ID, fmt.Sprintf("package %s is on delivery %s, which has not ended", info.PackageID, taken.holder))
	}
	if err != nil {
		return nil, fmt.Errorf("upsert package %s: %w", info.PackageID, err)
	}

	d, err = h.st(ctx).Deliveries.Update(ctx, d.ID, func(cur *domain.Delivery) error {
		return cur.RecordPackage(info.PackageID, now)
	})
	if err != nil {
		return nil, fmt.Errorf("record package on delivery: %w", err)
	}
	if d.Stage.Terminal() {
		return nil, nil
	}
	return []ports.Message{nextMessage(d, topology.QueuePackageUpdated, stepPackaged)}, nil
}

var errForeignPackage = errors.New("package record names another owner")

// packageTaken says the package is on delivery holder, which has not ended.
type packageTaken struct{ holder string }

func (e *packageTaken) Error() string { return "the package is on delivery " + e.holder }

// packageHolder returns the delivery other than deliveryID that package p
// is on, when that delivery has not ended; "" when p may move (its
// delivery ended, or is gone, or does not carry p: where the booking is
// written before its delivery, a request that lost a race for a delivery
// id, or sent another account's, may leave the package naming a delivery
// of another request, which holds no package of this account's but its
// own). A delivery that booked the package at
// ingest moments ago and is not stored yet is still being accepted (where
// the package and the delivery are not written in one transaction), so it
// holds the package for claimGrace after the booking.
func (h *Handlers) packageHolder(ctx context.Context, p *domain.Package, deliveryID string) (string, error) {
	if p.DeliveryID == "" || p.DeliveryID == deliveryID {
		return "", nil
	}
	other, err := h.st(ctx).Deliveries.Find(ctx, p.DeliveryID)
	if domain.IsCode(err, domain.ENOTFOUND) {
		if p.Status == packageBooked && h.clock.Now().Before(p.UpdatedAt.Add(claimGrace)) {
			return p.DeliveryID, nil
		}
		return "", nil
	}
	if err != nil {
		return "", fmt.Errorf("read delivery %s, which holds the package: %w", p.DeliveryID, err)
	}
	if other.Stage.Terminal() || other.OwnerID != p.OwnerID || other.Request.PackageInfo.PackageID != packageIDOf(p) {
		return "", nil
	}
	return other.ID, nil
}

// packageIDOf is the business's id of package p; a record written before
// the id was stored apart has it only in its key.
func packageIDOf(p *domain.Package) string {
	if p.PackageID != "" {
		return p.PackageID
	}
	return strings.TrimPrefix(p.ID, p.OwnerID+":")
}

// packageBooked is the status of a package a client named in a delivery
// request, from its acceptance until a drone is assigned (then
// packageScheduled, written by UpdatePackage).
const (
	packageBooked    = "Booked"
	packageScheduled = "Scheduled"
)

// claimGrace is how long a package booked by a delivery not stored yet
// stays that delivery's: longer than any acceptance takes, short enough
// that a request that failed after booking frees its package soon (its
// retry under the same deliveryId finds the package its own at once).
const claimGrace = time.Minute

// claimPackage books the package that request d names for d, in st (the
// unit of work that stores d, where there is one, so that the two are
// written together). It refuses, with 409 naming packageInfo.packageId,
// a package on another of the account's deliveries that has not ended: a
// package travels on one delivery at a time. Once that delivery has ended
// (delivered, cancelled or failed) the package may ship again. Booking at
// acceptance, rather than only checking, is what keeps two requests that
// race, or a second request while the first waits for its drone or its
// pickup time, from both being accepted.
func (h *Handlers) claimPackage(ctx context.Context, st ports.Store, d *domain.Delivery) error {
	info := d.Request.PackageInfo
	key := domain.PackageKey(d.OwnerID, info.PackageID)
	now := h.clock.Now()
	_, err := st.Packages.Upsert(ctx, key, func(cur *domain.Package) (*domain.Package, error) {
		var holder string
		var err error
		if cur != nil {
			if cur.OwnerID != d.OwnerID {
				return nil, errForeignPackage
			}
			if cur.DeliveryID == d.ID {
				return nil, ports.ErrSkip // a retry of this request
			}
			holder, err = h.packageHolder(ctx, cur, d.ID)
		}
		if err == nil && holder == "" {
			// A delivery whose request left its package id out carries a
			// package named after itself, which has no record of its own
			// until its drone is assigned: that package is on it all the
			// same, with no record or over one an ended delivery left.
			holder, err = defaultPackageHolder(ctx, st, d.OwnerID, info.PackageID, d.ID)
		}
		if err != nil {
			return nil, err
		}
		if holder != "" {
			return nil, &packageTaken{holder: holder}
		}
		if cur == nil {
			return &domain.Package{ID: key, PackageID: info.PackageID, OwnerID: d.OwnerID, DeliveryID: d.ID,
				Size: info.Size, Weight: info.Weight, Tag: info.Tag, Status: packageBooked, CreatedAt: now, UpdatedAt: now}, nil
		}
		cur.DeliveryID, cur.Size, cur.Weight, cur.Tag, cur.Status, cur.UpdatedAt = d.ID, info.Size, info.Weight, info.Tag, packageBooked, now
		return cur, nil
	})
	return bookingError(info.PackageID, err)
}

// bookingError is the answer to a request whose package could not be
// booked for it (err from the booking; nil when it was).
func bookingError(packageID string, err error) error {
	var taken *packageTaken
	switch {
	case err == nil:
		return nil
	case errors.As(err, &taken):
		return &domain.Error{Code: domain.ECONFLICT, Field: "packageInfo.packageId",
			Message: fmt.Sprintf("%s is on delivery %s, which has not ended; a package travels on one delivery at a time", packageID, taken.holder)}
	case errors.Is(err, errForeignPackage):
		return &domain.Error{Code: domain.ECONFLICT, Field: "packageInfo.packageId",
			Message: fmt.Sprintf("%s cannot be booked", packageID)}
	case domain.IsCode(err, domain.ECONFLICT), domain.IsCode(err, domain.EUNAVAILABLE):
		return err
	}
	return domain.Unavailable(err, "the package could not be booked; retry")
}

// bookPackage books the package request d names for d (claimPackage),
// when the request named one (named); a package named after d, which the
// request left out, is written only with d's drone (UpdatePackage), so it
// is only checked here: a record of it on another delivery that has not
// ended refuses d as a named package would be refused (one point read).
func (h *Handlers) bookPackage(ctx context.Context, st ports.Store, d *domain.Delivery, named bool) error {
	if named {
		return h.claimPackage(ctx, st, d)
	}
	cur, err := st.Packages.Find(ctx, domain.PackageKey(d.OwnerID, d.Request.PackageInfo.PackageID))
	switch {
	case domain.IsCode(err, domain.ENOTFOUND):
		return nil
	case err != nil:
		return domain.Unavailable(err, "the package could not be read; retry")
	case cur.OwnerID != d.OwnerID:
		return nil // the package step refuses it, as it refuses every such record
	}
	holder, err := h.packageHolder(ctx, cur, d.ID)
	if err == nil && holder != "" {
		err = &packageTaken{holder: holder}
	}
	return bookingError(d.Request.PackageInfo.PackageID, err)
}

// defaultPackageHolder returns the delivery of account owner, other than
// deliveryID, that carries the package packageID because it is named
// packageID and its request left the package id out, when that delivery
// has not ended; "" otherwise. Such a package has no record until the
// delivery's drone is assigned (UpdatePackage writes it), so the booking
// of a package that has no record asks the delivery of the same name.
func defaultPackageHolder(ctx context.Context, st ports.Store, owner, packageID, deliveryID string) (string, error) {
	if packageID == deliveryID {
		return "", nil
	}
	other, err := st.Deliveries.Find(ctx, packageID)
	switch {
	case domain.IsCode(err, domain.ENOTFOUND):
		return "", nil
	case err != nil:
		return "", fmt.Errorf("read delivery %s, which may carry the package: %w", packageID, err)
	case other.OwnerID != owner || other.Stage.Terminal() || other.Request.PackageInfo.PackageID != packageID:
		return "", nil
	}
	return other.ID, nil
}

// packageEnded reports whether a package record's status is one its
// delivery left it in when it ended.
func packageEnded(status string) bool {
	return status == "Delivered" || status == "Cancelled" || status == "Failed"
}

// defaultPackage is the package a delivery named id carries when its
// request left the package id out and no record of it is written yet (its
// drone is not assigned): what GET /api/packages/{id} shows until then.
// ok is false when no such delivery of account owner exists.
func defaultPackage(d *domain.Delivery, owner string) (p *domain.Package, ok bool) {
	info := d.Request.PackageInfo
	if d.OwnerID != owner || info.PackageID != d.ID {
		return nil, false
	}
	status := packageBooked
	switch d.Stage {
	case domain.StageCancelled:
		status = "Cancelled"
	case domain.StageFailed:
		status = "Failed"
	}
	return &domain.Package{ID: domain.PackageKey(owner, info.PackageID), PackageID: info.PackageID, OwnerID: owner, DeliveryID: d.ID,
		Size: info.Size, Weight: info.Weight, Tag: info.Tag, Status: status, CreatedAt: d.CreatedAt, UpdatedAt: d.UpdatedAt}, true
}
