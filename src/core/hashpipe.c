/* hashpipe.c - a worker thread that hashes while the caller writes. */
#include <pthread.h>
#include <stdlib.h>

#include "core/hashpipe.h"

/* Below this, hashing inline beats a thread handoff. */
#define PIPE_MIN (64 * 1024)

struct lup_hashpipe {
	pthread_t thread;
	pthread_mutex_t mu;
	pthread_cond_t cv;
	lup_hash *h;
	const void *p;
	size_t n;
	int busy;
	int quit;
};

static void *worker(void *arg)
{
	lup_hashpipe *hp = arg;

	pthread_mutex_lock(&hp->mu);
	for (;;) {
		while (!hp->busy && !hp->quit)
			pthread_cond_wait(&hp->cv, &hp->mu);
		if (!hp->busy && hp->quit)
			break;
		pthread_mutex_unlock(&hp->mu);
		lup_hash_update(hp->h, hp->p, hp->n);
		pthread_mutex_lock(&hp->mu);
		hp->busy = 0;
		pthread_cond_broadcast(&hp->cv);
	}
	pthread_mutex_unlock(&hp->mu);
	return NULL;
}

static lup_hashpipe *pipe_new(void)
{
	lup_hashpipe *hp = calloc(1, sizeof(*hp));

	if (!hp)
		return NULL;
	if (pthread_mutex_init(&hp->mu, NULL) != 0)
		goto fail_mu;
	if (pthread_cond_init(&hp->cv, NULL) != 0)
		goto fail_cv;
	if (pthread_create(&hp->thread, NULL, worker, hp) != 0)
		goto fail_thread;
	return hp;
fail_thread:
	pthread_cond_destroy(&hp->cv);
fail_cv:
	pthread_mutex_destroy(&hp->mu);
fail_mu:
	free(hp);
	return NULL;
}

int lup_hashpipe_post(lup_hashpipe **pipe, lup_hash *h, const void *p,
		      size_t n)
{
	lup_hashpipe *hp;

	if (!pipe || n < PIPE_MIN || (!*pipe && !(*pipe = pipe_new())))
		return -1;
	hp = *pipe;
	pthread_mutex_lock(&hp->mu);
	while (hp->busy) /* one job at a time */
		pthread_cond_wait(&hp->cv, &hp->mu);
	hp->h = h;
	hp->p = p;
	hp->n = n;
	hp->busy = 1;
	pthread_cond_broadcast(&hp->cv);
	pthread_mutex_unlock(&hp->mu);
	return 0;
}

void lup_hashpipe_wait(lup_hashpipe *hp)
{
	if (!hp)
		return;
	pthread_mutex_lock(&hp->mu);
	while (hp->busy)
		pthread_cond_wait(&hp->cv, &hp->mu);
	pthread_mutex_unlock(&hp->mu);
}

int lup_hashpipe_write(lup_hashpipe **pipe, lup_hash *h, lup_writer *w,
		       const void *p, size_t n, lup_error *err)
{
	int rc;

	if (lup_hashpipe_post(pipe, h, p, n) != 0) {
		/* Inline: write, then hash. */
		rc = w->write(w, p, n, err);
		if (rc == 0)
			lup_hash_update(h, p, n);
		return rc;
	}
	rc = w->write(w, p, n, err);
	lup_hashpipe_wait(*pipe);
	return rc;
}

void lup_hashpipe_free(lup_hashpipe **pipe)
{
	lup_hashpipe *hp = pipe ? *pipe : NULL;

	if (!hp)
		return;
	lup_hashpipe_wait(hp);
	pthread_mutex_lock(&hp->mu);
	hp->quit = 1;
	pthread_cond_broadcast(&hp->cv);
	pthread_mutex_unlock(&hp->mu);
	pthread_join(hp->thread, NULL);
	pthread_cond_destroy(&hp->cv);
	pthread_mutex_destroy(&hp->mu);
	free(hp);
	*pipe = NULL;
}
