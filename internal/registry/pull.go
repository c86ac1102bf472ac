package registry

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"go.podman.io/image/v5/copy"
	"go.podman.io/image/v5/docker"
	"go.podman.io/image/v5/docker/reference"
	"go.podman.io/image/v5/signature"
	istorage "go.podman.io/image/v5/storage"
	"go.podman.io/image/v5/types"
	"go.podman.io/storage"
)

// Pulled is an image a pull stored.
type Pulled struct {
	ID   string // the image ID (hex config digest)
	Name string // the name it is stored under, e.g. docker.io/library/alpine:latest
}

// Pull copies the image ref names (short names resolved as podman does;
// a multi-platform index gives this machine's linux image) into store,
// layers in parallel, every blob checked against its digest. The store
// should be one snapshot.Store.ForTransfer gives, so that the layers of a
// pull that fails do not stay.
func (c *Client) Pull(ctx context.Context, store storage.Store, ref string) (Pulled, error) {
	sys := c.systemContext()
	candidates, desc, err := pullCandidates(sys, ref)
	if err != nil {
		return Pulled{}, err
	}
	var errs []error
	for _, named := range candidates {
		if len(candidates) > 1 && c.opts.Report != nil {
			fmt.Fprintf(c.opts.Report, "Trying to pull %s...\n", named)
		}
		p, err := c.pullOne(ctx, store, named)
		if err == nil {
			return p, nil
		}
		if ctx.Err() != nil {
			return Pulled{}, err
		}
		errs = append(errs, err)
	}
	if len(errs) == 1 {
		return Pulled{}, errs[0]
	}
	return Pulled{}, fmt.Errorf("pulling %s (%s) failed from every candidate:\n  %w", ref, desc, candidateErrors(errs))
}

// pullOne pulls one fully qualified reference.
func (c *Client) pullOne(ctx context.Context, store storage.Store, named reference.Named) (Pulled, error) {
	src, err := docker.NewReference(named)
	if err != nil {
		return Pulled{}, fmt.Errorf("%s: %w", named, err)
	}
	dst, err := istorage.Transport.NewStoreReference(store, named, "")
	if err != nil {
		return Pulled{}, fmt.Errorf("%s: %w", named, err)
	}
	sys := c.systemContext()
	allowLoopbackHTTP(ctx, sys, named, false)
	if err := c.setCredentials(sys, named, pullHosts(sys, named)); err != nil {
		return Pulled{}, err
	}
	var resolved types.ImageReference
	_, err = c.copyImage(ctx, dst, src, &copy.Options{
		SourceCtx:               sys,
		DestinationCtx:          c.systemContext(),
		ReportWriter:            c.opts.Report,
		ReportResolvedReference: &resolved,
		ImageListSelection:      copy.CopySystemImage,
	})
	if err != nil {
		return Pulled{}, explain(err, named.String(), c.opts.AnswerTimeout)
	}
	img, err := istorage.Transport.GetStoreImage(store, resolved)
	if err != nil {
		return Pulled{}, fmt.Errorf("%s: finding the pulled image: %w", named, err)
	}
	return Pulled{ID: img.ID, Name: named.String()}, nil
}

// copyImage runs copy.Image under the trust policy, failing it when the
// source or destination has not answered within the answer timeout by the
// time the first blob should move: a registry that takes connections but
// never answers cannot hang the transfer.
func (c *Client) copyImage(ctx context.Context, dst, src types.ImageReference, opts *copy.Options) ([]byte, error) {
	pc, err := c.policyContext(opts.SourceCtx)
	if err != nil {
		return nil, err
	}
	defer pc.Destroy()
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	timer := time.AfterFunc(c.opts.AnswerTimeout, func() { cancel(errSilent) })
	progress := make(chan types.ProgressProperties, 8)
	drained := make(chan struct{})
	go func() {
		defer close(drained)
		for range progress {
			timer.Stop() // the registry answered: blobs are moving
		}
	}()
	opts.Progress, opts.ProgressInterval = progress, time.Second
	manifest, err := copy.Image(ctx, pc, dst, src, opts)
	timer.Stop()
	close(progress)
	<-drained
	if err != nil && errors.Is(context.Cause(ctx), errSilent) {
		return nil, errors.Join(errSilent, err)
	}
	var rejected signature.PolicyRequirementError
	if errors.As(err, &rejected) {
		return nil, fmt.Errorf("refused by the image trust policy (policy.json): %w", err)
	}
	return manifest, err
}

// candidateErrors are the failures of every candidate of a short name,
// one per line.
type candidateErrors []error

func (e candidateErrors) Error() string {
	msgs := make([]string, len(e))
	for i, err := range e {
		msgs[i] = err.Error()
	}
	return strings.Join(msgs, "\n  ")
}

func (e candidateErrors) Unwrap() []error { return e }
