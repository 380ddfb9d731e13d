from treadle.core.requests import AnnotationRequests


def test_an_event_from_before_the_annotation_was_removed_is_no_new_request() -> None:
    requests = AnnotationRequests()
    assert requests.is_new("100")
    requests.cleared("120")
    assert not requests.is_new("119")  # the watch delivering an old event late
    assert not requests.is_new("120")
    assert requests.is_new("121")
    requests.cleared(None)  # the object changed meanwhile: nothing known
    assert requests.is_new("121")
    assert requests.is_new("")  # no version: take it
