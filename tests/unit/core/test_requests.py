from treadle.core.requests import AnnotationRequests

BACKFILL = "treadle.dev/backfill"
RUN_NOW = "treadle.dev/run-now"


def carried_out(requests: AnnotationRequests, annotation: str, removed_at: str | None) -> str:
    value = requests.take(annotation)
    assert value is not None
    requests.done(annotation)
    requests.removed(annotation, removed_at)
    return value


def test_an_event_older_than_the_removal_is_no_new_request() -> None:
    requests = AnnotationRequests()
    assert requests.seen(BACKFILL, "a", "100")
    carried_out(requests, BACKFILL, "120")
    assert not requests.seen(BACKFILL, "a", "119")  # the watch delivering an old event late
    assert not requests.seen(BACKFILL, "a", "120")
    assert requests.seen(BACKFILL, "a", "121")  # the same request made again


def test_events_while_a_request_is_carried_out_do_not_queue_it_again() -> None:
    """The bug of a lost then replayed backfill: the status writes made while carrying a
    request out come back from the watch with the annotation still set."""
    requests = AnnotationRequests()
    assert requests.seen(BACKFILL, "a", "100")
    assert requests.take(BACKFILL) == "a"
    assert not requests.seen(BACKFILL, "a", "105")  # its own status write
    requests.done(BACKFILL)
    assert not requests.seen(BACKFILL, "a", "106")  # an Event, before the removal
    requests.removed(BACKFILL, "110")
    assert not requests.pending
    assert requests.seen(BACKFILL, "a", "111")  # the next request, same value, is taken
    assert requests.take(BACKFILL) == "a"


def test_a_newer_request_set_while_one_is_carried_out_is_taken_next() -> None:
    requests = AnnotationRequests()
    requests.seen(BACKFILL, "a", "100")
    requests.take(BACKFILL)
    assert requests.seen(BACKFILL, "b", "103")
    requests.done(BACKFILL)
    requests.removed(BACKFILL, None)  # test-and-remove of "a" failed: "b" is set
    assert requests.take(BACKFILL) == "b"


def test_a_removal_of_one_annotation_does_not_hide_another() -> None:
    requests = AnnotationRequests()
    requests.seen(BACKFILL, "a", "100")
    carried_out(requests, BACKFILL, "120")
    assert requests.seen(RUN_NOW, "now", "115")  # set before the backfill's removal
    assert requests.wanted(RUN_NOW)


def test_a_request_that_failed_is_taken_again_unless_a_newer_one_came() -> None:
    requests = AnnotationRequests()
    requests.seen(RUN_NOW, "t1", "100")
    requests.take(RUN_NOW)
    requests.failed(RUN_NOW)
    assert requests.take(RUN_NOW) == "t1"
    requests.seen(RUN_NOW, "t2", "101")
    requests.failed(RUN_NOW)
    assert requests.take(RUN_NOW) == "t2"


def test_a_removal_that_failed_is_retried_and_not_carried_out_twice() -> None:
    requests = AnnotationRequests()
    requests.seen(RUN_NOW, "t1", "100")
    requests.take(RUN_NOW)
    requests.done(RUN_NOW)
    assert requests.to_remove() == [(RUN_NOW, "t1")]
    assert not requests.seen(RUN_NOW, "t1", "130")
    assert not requests.wanted(RUN_NOW)
    requests.removed(RUN_NOW, "131")
    assert requests.to_remove() == []


def test_a_version_that_is_no_number_is_taken() -> None:
    requests = AnnotationRequests()
    assert requests.seen(RUN_NOW, "x", "")
    carried_out(requests, RUN_NOW, None)
    assert requests.seen(RUN_NOW, "x", "")
