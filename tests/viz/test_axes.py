"""log_axis: a few readable labels on every log axis (issue 13: crowded log-axis labels in chapter 5)."""

import pytest

from course.viz.axes import log_axis


def test_short_ranges_get_1_2_5_ticks_that_cover_the_data():
    axis = log_axis([0.22, 0.5, 7.9])  # 1.5 decades: plotly's default labels every digit here
    assert axis["type"] == "log" and "dtick" not in axis
    assert axis["tickvals"] == pytest.approx([0.2, 0.5, 1, 2, 5, 10])
    assert 3 <= len(log_axis([0.04, 1.2])["tickvals"]) <= 8


def test_long_ranges_get_one_label_per_decade_and_skip_zeros():
    axis = log_axis([0.0, 2e-5, 4e-2, 1e3], title_text="x")  # 0: a gradient that vanished
    assert axis["dtick"] == 1 and "tickvals" not in axis and axis["title_text"] == "x"


def test_rejects_data_a_log_axis_cannot_show():
    with pytest.raises(ValueError, match="positive"):
        log_axis([0.0, -1.0])
