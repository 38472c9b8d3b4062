-- The hot path: an anonymous join of room 'bench'.
select * from waitroom.join('bench');
