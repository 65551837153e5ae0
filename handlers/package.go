package handlers

import (
	"context"
	"errors"
	"fmt"

	"github.com/fabrikam/dronedelivery/shared/domain"
	"github.com/fabrikam/dronedelivery/shared/ports"
	"github.com/fabrikam/dronedelivery/shared/topology"
)

// UpdatePackage creates or updates the package record of a delivery whose
// drone is assigned, and hands the delivery to the ETA step. Package ids
// are scoped to the business (domain.PackageKey): another business using
// the same id has a record of its own. A record that still cannot be taken
// (one naming another owner under this key, which only a corrupted store
// holds) fails the delivery and releases its drone rather than leave it
// Created with the drone booked.
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
			return &domain.Package{ID: key, PackageID: info.PackageID, OwnerID: d.OwnerID, DeliveryID: d.ID,
				Size: info.Size, Weight: info.Weight, Tag: info.Tag, Status: "Scheduled", CreatedAt: now, UpdatedAt: now}, nil
		}
		if cur.OwnerID != d.OwnerID {
			return nil, errForeignPackage
		}
		if cur.DeliveryID == d.ID && cur.Size == info.Size && cur.Weight == info.Weight && cur.Tag == info.Tag && cur.Status == "Scheduled" {
			return nil, ports.ErrSkip
		}
		cur.DeliveryID, cur.Size, cur.Weight, cur.Tag, cur.Status, cur.UpdatedAt = d.ID, info.Size, info.Weight, info.Tag, "Scheduled", now
		return cur, nil
	})
	if errors.Is(err, errForeignPackage) {
		return h.fail(ctx, d.ID, fmt.Sprintf("package %s could not be recorded", info.PackageID))
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
